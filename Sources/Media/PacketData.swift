import CFFmpeg
import Foundation

/// Wraps a referenced AVPacket's bytes as `Data` without copying them; the packet is freed with the Data.
enum PacketData {
  static func take(_ packet: UnsafeMutablePointer<AVPacket>) -> Data {
    guard let bytes = packet.pointee.data, packet.pointee.size > 0 else { return Data() }
    guard var owned = av_packet_clone(packet) else {
      return Data(bytes: bytes, count: Int(packet.pointee.size))
    }
    let holder = PacketHolder(owned)
    owned = holder.packet
    return Data(
      bytesNoCopy: UnsafeMutableRawPointer(owned.pointee.data), count: Int(owned.pointee.size),
      deallocator: .custom { _, _ in holder.free() })
  }
}

private final class PacketHolder: @unchecked Sendable {
  // Only touched by the Data deallocator, once.
  var packet: UnsafeMutablePointer<AVPacket>
  init(_ packet: UnsafeMutablePointer<AVPacket>) { self.packet = packet }
  func free() {
    var pointer: UnsafeMutablePointer<AVPacket>? = packet
    av_packet_free(&pointer)
  }
}
