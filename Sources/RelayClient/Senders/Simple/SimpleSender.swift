import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import Logging
import RelayCore
import RelayProtocol

/// One `/video/Analyse` stream of the minimal protocol: raw frames of the configured shape, one request
/// each; any integer in reply acknowledges the oldest frame in flight (the original server always
/// answers 1). The protocol has no sessions: after a reconnect every unacknowledged frame is sent again.
struct SimpleSender: FrameSender {
  let configuration: PublisherConfiguration
  /// The original client sends no metadata; a relay-server files the frames under x-device-id.
  let sendsDeviceID: Bool
  let logger: Logger

  func run(attempt: UInt64, state: PublishState) async throws {
    try await ClientTransport.withClient(configuration.server, security: configuration.security) { client in
      var options = CallOptions.defaults
      options.waitForReady = false
      options.maxRequestMessageBytes = configuration.maxMessageBytes
      options.maxResponseMessageBytes = 1 << 16
      var metadata = Metadata()
      if sendsDeviceID { metadata.addString(configuration.device.rawValue, forKey: "x-device-id") }
      try await video.Client(wrapping: client).analyse(
        metadata: metadata, options: options,
        requestProducer: { writer in try await produce(into: writer, attempt: attempt, state: state) },
        onResponse: { response in try await consume(response, attempt: attempt, state: state) })
    }
  }

  private func produce(into writer: RPCWriter<MsgRequest>, attempt: UInt64, state: PublishState) async throws {
    // No opening answer in this protocol: the stream counts as accepted once it is open.
    state.markAccepted(attempt: attempt)
    Publisher.resumed(after: 0, state: state, server: configuration.server, logger: logger)
    let generation = state.withLock { $0.queue.streamCodec.generation }
    let window = configuration.window
    let maxBytes = configuration.maxInFlightBytes
    while true {
      let next = try await state.nextFrame(
        attempt: attempt, generation: generation, window: window, maxInFlightBytes: maxBytes)
      switch next {
      case nil:
        return
      case .wait:
        continue
      case .codecChanged:
        return  // the pictures keep their shape; a new stream carries on
      case .frame(let entry, _):
        state.recordSent(bytes: entry.packet.data.count)
        try await writer.write(.with { $0.img = entry.packet.data })
      }
    }
  }

  private func consume(_ response: StreamingClientResponse<MsgReply>, attempt: UInt64, state: PublishState) async throws {
    defer { state.responseEnded(attempt: attempt) }
    for try await _ in response.messages {
      let now = WallClock.monotonicNs()
      // Whatever the integer says, it answers the oldest frame still in flight.
      if let oldest = state.withLock({ $0.queue.oldestInFlight }) {
        Publisher.acknowledged(upTo: oldest, at: now, state: state)
      }
      state.wake()
    }
  }
}
