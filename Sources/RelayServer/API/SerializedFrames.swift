import Foundation
import GRPCCore
import GRPCProtobuf
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
/// (devices are bounded by --max-devices).
final class SerializedFrames: Sendable {
  private struct Key: Equatable {
    var packetIndex: UInt64
    var sequence: UInt64
    var timestampMs: Int64
  }

  private let last = Mutex<[DeviceID: (key: Key, frame: SerializedVideoFrame)]>([:])

  func serialized(_ frame: LiveFrame, device: DeviceID) -> SerializedVideoFrame {
    let key = Key(packetIndex: frame.packetIndex, sequence: frame.sequence, timestampMs: frame.timestampMs)
    if let cached = last.withLock({ $0[device] }), cached.key == key { return cached.frame }
    // Made outside the lock; two consumers racing for a new picture may both make it, once each.
    let made = SerializedVideoFrame(bytes: (try? VideoFrame(frame, device: device).serializedData()) ?? Data())
    last.withLock { $0[device] = (key, made) }
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
