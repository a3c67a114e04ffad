// The minimal protocol (/video/Analyse): an input is up to 8 calls; each call's first piece is its
// x-device-id metadata (empty: none, so --simple-default-device applies), the others are MsgRequest
// messages (one raw frame each), fed to the server's own handler in order against one server state.
// The server's frame shape alternates between calls: 4x6 gray (24 bytes) and 2x3x3 bgr24 (18 bytes).
import Foundation
import CFuzzDriver
import FuzzSupport
import GRPCCore
import RelayCore
import RelayProtocol

@testable import RelayServer

private func configuration(_ shape: PictureShape) -> ServerConfiguration {
  var configuration = ServerConfiguration()
  configuration.maxFrameBytes = 1 << 16
  configuration.ringMaxBytes = 1 << 12
  configuration.maxDevices = 4
  configuration.simpleShape = shape
  return configuration
}

private let shapes = [
  configuration(PictureShape(height: 4, width: 6, pixelFormat: .gray)),
  configuration(PictureShape(height: 2, width: 3, pixelFormat: .bgr24)),
]

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ start: UnsafeRawPointer?, _ count: Int) -> CInt {
  let calls = Fuzz.calls(Fuzz.data(start, count))
  Fuzz.block {
    let registry = StreamRegistry(configuration: shapes[0], metrics: DecoderMetrics(), logger: Fuzz.logger)
    for (index, call) in calls.enumerated() {
      let configuration = shapes[index % shapes.count]
      let service = SimpleIngestService(registry: registry, configuration: configuration, logger: Fuzz.logger)
      var metadata: Metadata = [:]
      if let device = call.first, !device.isEmpty {
        metadata.addString(String(decoding: device, as: UTF8.self), forKey: SimpleIngestService.deviceMetadataKey)
      }
      let request = StreamingServerRequest(metadata: metadata, messages: Fuzz.requests(Array(call.dropFirst()), as: MsgRequest.self))
      let answers = Collector<MsgReply>()
      var stored = 0
      do {
        try await Access.$grant.withValue(.everything) {
          let response = try await service.analyse(request: request, context: Fuzz.context(service: "video", method: "Analyse"))
          if case .success(let contents) = response.accepted { _ = try await contents.producer(answers.writer) }
        }
      } catch {
        // A refusal is an answer; only crashes and hangs are findings.
      }
      // Replies count the call's frames 1, 2, 3, …, one per frame of the configured size.
      for (position, reply) in answers.written.enumerated() {
        Fuzz.require(reply.reply == Int32(position + 1), "reply \(position) is \(reply.reply)")
        stored += 1
      }
      let frames = call.dropFirst().prefix(stored).compactMap { try? MsgRequest(serializedBytes: $0) }
      for frame in frames {
        Fuzz.require(frame.img.count == configuration.simpleShape.frameBytes, "a frame of \(frame.img.count) bytes was stored")
      }
    }
  }
  return 0
}

@_cdecl("FuzzSimple_main")
public func main(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>) -> CInt {
  framerelay_fuzz_driver(argc, argv)
}
