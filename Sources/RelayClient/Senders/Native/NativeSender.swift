import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import Logging
import RelayCore
import RelayProtocol

/// One `FrameRelay/Publish` stream: hello, accepted (the resume point), clock sync, then frames from
/// the queue as the window allows, each acked by its sequence number.
struct NativeSender: FrameSender {
  let configuration: PublisherConfiguration
  /// The same for every attempt of one run, so the server resumes the session.
  let sessionID: String
  let logger: Logger

  var resumesSessions: Bool { true }

  func run(attempt: UInt64, state: PublishState) async throws {
    let accepted = Locked<Framerelay_V1_Accepted?>(nil)  // from the response side to the request side
    let clock = Locked(ClockSamples())  // the best offset so far, and one better still to send
    try await ClientTransport.withClient(
      configuration.server, security: configuration.security, shared: configuration.connection
    ) { client in
      var options = CallOptions.defaults
      options.waitForReady = false  // fail fast and say so, rather than hang on an unreachable server
      options.maxRequestMessageBytes = configuration.maxMessageBytes
      options.maxResponseMessageBytes = 1 << 20
      try await Framerelay_V1_FrameRelay.Client(wrapping: client).publish(
        options: options,
        requestProducer: { writer in
          try await produce(into: writer, accepted: accepted, clock: clock, attempt: attempt, state: state)
        },
        onResponse: { response in
          try await consume(response, accepted: accepted, clock: clock, attempt: attempt, state: state)
        })
    }
  }

  /// The request side: hello, clock sync, then frames from the queue as the window allows.
  private func produce(
    into writer: RPCWriter<Framerelay_V1_PublishRequest>, accepted acceptedMessage: Locked<Framerelay_V1_Accepted?>,
    clock: Locked<ClockSamples>, attempt: UInt64, state: PublishState
  ) async throws {
    let (generation, codec) = state.withLock { $0.queue.streamCodec }
    let helloSentMs = WallClock.nowMs()
    try await writer.write(.with { $0.message = .hello(hello(codec, sentAtMs: helloSentMs)) })
    try await state.waitUntil(attempt: attempt) { $0.accepted }
    guard let accepted = acceptedMessage.value else { return }
    let offset = ClockOffset(sentAtMs: helloSentMs, serverTimeMs: accepted.serverTimeMs, receivedAtMs: WallClock.nowMs())
    clock.withLock { _ = $0.estimator.offer(offset) }
    try await writer.write(Self.clockSync(offset))
    Publisher.resumed(after: accepted.resumeAfter, state: state, server: configuration.server, logger: logger)

    let window = max(1, min(configuration.window, accepted.window == 0 ? configuration.window : Int(accepted.window)))
    let maxBytes = configuration.maxInFlightBytes
    var captureSent = -1
    while true {
      let sentVersion = captureSent
      let next = try await state.nextFrame(
        attempt: attempt, generation: generation, window: window, maxInFlightBytes: maxBytes,
        orWhen: { $0.captureVersion != sentVersion })
      // The camera's state goes out before the next frame.
      let (report, version) = state.withLock { ($0.lastCapture, $0.captureVersion) }
      if version != captureSent, let report {
        try await writer.write(.with { $0.message = .captureStatus(.init(report)) })
      }
      captureSent = version
      switch next {
      case nil:
        return
      case .wait:
        continue
      case .codecChanged:
        logger.info("the source's format changed: starting a new stream with a new hello")
        return
      case .frame(let entry, let gap):
        // A better clock sample (from an ack) goes out before the next frame.
        if let better = clock.withLock({ samples in defer { samples.pending = nil }; return samples.pending }) {
          try await writer.write(Self.clockSync(better))
        }
        if let elsewhere = gap?.storedElsewhere {
          try await writer.write(.with {
            $0.message = .framesDropped(.with {
              $0.first = elsewhere.lowerBound
              $0.last = elsewhere.upperBound
              $0.storedElsewhere = true
            })
          })
        }
        if let dropped = gap?.dropped {
          try await writer.write(.with {
            $0.message = .framesDropped(.with { $0.first = dropped.lowerBound; $0.last = dropped.upperBound })
          })
        }
        state.recordSent(bytes: entry.packet.data.count)
        try await writer.write(Self.frameMessage(entry))
      }
    }
  }

  /// The response side: accepted, then acks.
  private func consume(
    _ response: StreamingClientResponse<Framerelay_V1_PublishResponse>,
    accepted acceptedMessage: Locked<Framerelay_V1_Accepted?>, clock: Locked<ClockSamples>, attempt: UInt64,
    state: PublishState
  ) async throws {
    defer { state.responseEnded(attempt: attempt) }
    for try await message in response.messages {
      let now = WallClock.monotonicNs()
      switch message.message {
      case .accepted(let accepted):
        acceptedMessage.value = accepted
        state.markAccepted(attempt: attempt)
      case .ack(let ack):
        let acked = Publisher.acknowledged(upTo: ack.sequence, at: now, state: state)
        // The acked frame's own send time and the server's time at its ack: a clock sample.
        if ack.serverTimeMs > 0, let sentAt = acked.sentTimes.max() {
          let receivedMs = WallClock.nowMs()
          let sample = ClockOffset(
            sentAtMs: receivedMs - Int64((now &- sentAt) / 1_000_000), serverTimeMs: ack.serverTimeMs,
            receivedAtMs: receivedMs)
          clock.withLock { samples in
            if let better = samples.estimator.offer(sample) { samples.pending = better }
          }
        }
      case .none:
        continue
      }
      state.wake()
    }
  }

  private static func clockSync(_ offset: ClockOffset) -> Framerelay_V1_PublishRequest {
    .with { $0.message = .clockSync(.with { $0.offsetMs = offset.offsetMs; $0.roundTripMs = offset.roundTripMs }) }
  }

  private func hello(_ codec: CodecDescription, sentAtMs: Int64) -> Framerelay_V1_Hello {
    .with {
      $0.deviceID = configuration.device.rawValue
      $0.sessionID = sessionID
      $0.codec = codec.proto
      let (kind, label) = configuration.source.kindAndLabel
      $0.sourceKind = .init(kind)
      $0.source = label
      $0.client = .with {
        $0.host = ProcessInfo.processInfo.hostName
        $0.pid = getpid()
        $0.version = configuration.clientVersion
      }
      $0.clientTimeMs = sentAtMs
    }
  }

  private static func frameMessage(_ entry: Outbox.Entry) -> Framerelay_V1_PublishRequest {
    .with {
      $0.message = .frame(
        .with {
          $0.sequence = entry.sequence
          $0.data = entry.packet.data
          $0.pts = entry.packet.pts
          $0.dts = entry.packet.dts
          $0.keyframe = entry.packet.isKeyframe
          $0.captureTimeMs = entry.packet.captureTimeMs
        })
    }
  }
}

extension Framerelay_V1_CaptureStatus {
  init(_ report: PublishState.CaptureReport) {
    self.init()
    state = .init(report.state)
    lastError = report.error
    failingStreak = report.failingStreak
  }
}

/// One stream's clock samples: the best so far, and a better one not yet sent.
struct ClockSamples: Sendable {
  var estimator = ClockEstimator()
  var pending: ClockOffset?
}
