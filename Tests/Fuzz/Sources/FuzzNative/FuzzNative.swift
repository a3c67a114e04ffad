// The native protocol (framerelay.v1.FrameRelay/Publish): an input is up to 8 calls, each a sequence
// of PublishRequest messages (hello, frames, drops, clock syncs, capture status) fed to the server's
// own Publish handler, in order, against one server state (registry and sessions), so reconnects,
// resumes and take-overs happen as they would on a real server. No network: the handler gets the
// messages through an in-process request stream and writes its answers into a collector.
import Foundation
import CFuzzDriver
import FuzzSupport
import GRPCCore
import RelayCore
import RelayProtocol

@testable import RelayServer

private let configuration: ServerConfiguration = {
  var configuration = ServerConfiguration()
  configuration.maxFrameBytes = 1 << 16
  configuration.ringMaxBytes = 1 << 20
  configuration.maxDevices = 4
  return configuration
}()

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ start: UnsafeRawPointer?, _ count: Int) -> CInt {
  let calls = Fuzz.calls(Fuzz.data(start, count))
  Fuzz.block {
    let registry = StreamRegistry(configuration: configuration, metrics: DecoderMetrics(), logger: Fuzz.logger)
    let service = NativeIngestService(
      registry: registry, sessions: NativeSessions(), configuration: configuration, logger: Fuzz.logger)
    for call in calls {
      let answers = Collector<Framerelay_V1_PublishResponse>()
      do {
        try await Access.$grant.withValue(.everything) {
          try await service.publish(
            request: Fuzz.requests(call, as: Framerelay_V1_PublishRequest.self), response: answers.writer,
            context: Fuzz.context(service: "framerelay.v1.FrameRelay", method: "Publish"))
        }
      } catch {
        // A refusal is an answer (a gRPC status); only crashes and hangs are findings.
      }
      check(answers.written)
    }
    for entry in registry.all { check(entry.stream) }
  }
  return 0
}

/// One accepted first, then acks in increasing sequence order, each for a frame just stored.
private func check(_ answers: [Framerelay_V1_PublishResponse]) {
  guard let first = answers.first else { return }
  guard case .accepted = first.message else { Fuzz.require(false, "first answer is not accepted: \(first)"); return }
  var last: UInt64?
  for answer in answers.dropFirst() {
    guard case .ack(let ack) = answer.message else { Fuzz.require(false, "a second accepted: \(answer)"); return }
    if let last { Fuzz.require(ack.sequence > last, "ack \(ack.sequence) after ack \(last)") }
    last = ack.sequence
  }
}

/// The ring's packets have increasing indices and it starts at a keyframe.
private func check(_ stream: DeviceStream) {
  let packets = stream.packets(after: 0)
  if let first = packets.first { Fuzz.require(first.isKeyframe, "ring of \(stream.id) starts with a non-keyframe") }
  for (a, b) in zip(packets, packets.dropFirst()) {
    Fuzz.require(a.index < b.index, "ring indices \(a.index) then \(b.index)")
  }
  Fuzz.require(stream.ringUsage.bytes <= configuration.ringMaxBytes + configuration.maxFrameBytes, "ring over its bound")
  _ = stream.bufferSummary
  _ = stream.indexBeforeNewestKeyframe
}

@_cdecl("FuzzNative_main")
public func main(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>) -> CInt {
  framerelay_fuzz_driver(argc, argv)
}
