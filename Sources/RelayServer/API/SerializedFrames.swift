import Foundation
import GRPCCore
import GRPCProtobuf
import Media
import RelayCore
import RelayProtocol
import SwiftProtobuf
import Synchronization

/// A VideoFrame already in protobuf's wire format, handed to the transport as it is.
struct SerializedVideoFrame: Sendable {
  /// Empty: the empty VideoFrame ("no new frame yet").
  var bytes = Data()
}

/// Writes a SerializedVideoFrame's bytes as they are: the one copy into the transport's buffer, with
/// no zero-filling and no field-by-field encoding (what `ProtobufSerializer` does for each call).
struct SerializedVideoFrameSerializer: MessageSerializer {
  func serialize<Bytes: GRPCContiguousBytes>(_ message: SerializedVideoFrame) throws -> Bytes {
    Bytes(message.bytes)
  }
}

/// The last picture each device served, serialized once: a thousand consumers of one camera cost one
/// serialization per picture, not a thousand. Costs one more copy of a picture per device consumed
/// (devices are bounded by --max-devices), written into a reused buffer (see PictureBuffers), and the
/// one buffer kept free for the next picture; both go once a device has not been asked for `idleAfter`.
final class SerializedFrames: Sendable {
  private struct Key: Equatable {
    var packetIndex: UInt64
    var sequence: UInt64
    var timestampMs: Int64
  }

  private struct Served {
    var key: Key
    var frame: SerializedVideoFrame
    var buffers: PictureBuffers
    var servedAt: ContinuousClock.Instant
  }

  private struct State {
    var devices: [DeviceID: Served] = [:]
    var nextSweep = ContinuousClock.now
  }

  private let state = Mutex(State())
  private let idleAfter: Duration

  init(idleAfter: Duration = .seconds(30)) { self.idleAfter = idleAfter }

  func serialized(_ frame: LiveFrame, device: DeviceID) -> SerializedVideoFrame {
    let key = Key(packetIndex: frame.packetIndex, sequence: frame.sequence, timestampMs: frame.timestampMs)
    let now = ContinuousClock.now
    let (cached, pool) = state.withLock { state -> (SerializedVideoFrame?, PictureBuffers?) in
      guard var entry = state.devices[device] else { return (nil, nil) }
      entry.servedAt = now
      state.devices[device] = entry
      return (entry.key == key ? entry.frame : nil, entry.buffers)
    }
    if let cached { return cached }
    // Made outside the lock; two consumers racing for a new picture may both make it, once each.
    let buffers = pool ?? PictureBuffers(keep: 1)
    let made = SerializedVideoFrame(bytes: (try? Self.wireFormat(VideoFrame(frame, device: device), into: buffers)) ?? Data())
    let idle = idleAfter
    state.withLock { state in
      state.devices[device] = Served(key: key, frame: made, buffers: buffers, servedAt: now)
      guard now >= state.nextSweep else { return }
      state.devices = state.devices.filter { now - $0.value.servedAt < idle }  // no one asks for them any more
      state.nextSweep = now + min(idle, .seconds(1))
    }
    return made
  }

  /// Devices with a serialized picture kept (for tests).
  var devicesKept: Int { state.withLock { $0.devices.count } }
}

extension SerializedFrames {
  /// `frame` in protobuf's wire format, byte for byte what SwiftProtobuf writes (fields in number order),
  /// with the picture (field 3, `data`) copied once straight into an uninitialised buffer: SwiftProtobuf
  /// would zero-fill a fresh buffer first and then copy.
  static func wireFormat(_ frame: VideoFrame, into pool: PictureBuffers) throws -> Data {
    var head = VideoFrame()  // fields 1 and 2
    head.width = frame.width
    head.height = frame.height
    var tail = frame  // fields 4 to 17
    tail.width = 0
    tail.height = 0
    tail.data = Data()
    let headBytes: [UInt8] = try head.serializedBytes()
    let tailBytes: [UInt8] = try tail.serializedBytes()
    let picture = frame.data
    var dataHeader: [UInt8] = []
    if !picture.isEmpty {  // proto3 leaves an empty bytes field out
      dataHeader.append(3 << 3 | 2)  // field 3, length-delimited
      var length = UInt64(picture.count)
      while length >= 0x80 {
        dataHeader.append(UInt8(truncatingIfNeeded: length) | 0x80)
        length >>= 7
      }
      dataHeader.append(UInt8(length))
    }
    let count = headBytes.count + dataHeader.count + picture.count + tailBytes.count
    let made = pool.data(count: count) { bytes in
      var offset = 0
      func put(_ part: UnsafeRawBufferPointer) {
        guard let source = part.baseAddress, !part.isEmpty else { return }
        (bytes + offset).copyMemory(from: source, byteCount: part.count)
        offset += part.count
      }
      headBytes.withUnsafeBytes(put)
      dataHeader.withUnsafeBytes(put)
      picture.withUnsafeBytes(put)
      tailBytes.withUnsafeBytes(put)
    }
    guard let made else { throw RPCError(code: .resourceExhausted, message: "out of memory for a \(count)-byte VideoFrame") }
    return made
  }
}

/// The Image service as the server registers it: the generated registrations, with VideoLatestImage's
/// replaced by one that writes pictures serialized once (`SerializedFrames`).
struct ImageAPI: RegistrableRPCService {
  let service: ImageService

  func registerMethods<Transport: ServerTransport>(with router: inout RPCRouter<Transport>) {
    service.registerMethods(with: &router)
    router.registerHandler(
      forMethod: Chrys_Cloud_Videostreaming_V1beta1_Image.Method.VideoLatestImage.descriptor,
      deserializer: ProtobufDeserializer<Chrys_Cloud_Videostreaming_V1beta1_VideoFrameRequest>(),
      serializer: SerializedVideoFrameSerializer(),
      handler: { request, context in try await service.latestImagesSerialized(request: request, context: context) })
  }
}
