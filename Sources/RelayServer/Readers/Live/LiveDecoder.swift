import Foundation
import Logging
import Media
import RelayCore
import Synchronization

/// Decodes a stream's packets to bgr24 on a thread of its own, only while someone consumes it:
/// started by the first request, stopped after `idleTimeout` without one. Each run starts at the
/// ring's newest keyframe with no frames left from an earlier run (see LatestFrames.begin).
final class LiveDecoder: Sendable {
  private struct State {
    var thread: ThreadHandle?
    var subscription: StreamSubscription.Canceller?
    var lastDemand = ContinuousClock.now
    var run = 0
    var stopping = false
  }

  private let stream: DeviceStream
  private let idleTimeout: Duration
  private let metrics: DecoderMetrics
  private let logger: Logger
  private let state = Mutex(State())

  init(stream: DeviceStream, idleTimeout: Duration, metrics: DecoderMetrics, logger: Logger) {
    self.stream = stream
    self.idleTimeout = idleTimeout
    self.metrics = metrics
    self.logger = logger
  }

  /// A consumer wants frames: keep decoding, and start if not running.
  func demand() {
    let started = state.withLock { state -> Bool in
      state.lastDemand = .now
      guard state.thread == nil, !state.stopping else { return false }
      state.run += 1
      // From the newest keyframe: the first consumer gets the newest picture, decoded from there.
      let subscription = stream.subscribe(.live(maxBacklogMs: 1000), after: stream.indexBeforeNewestKeyframe)
      state.subscription = subscription.canceller
      stream.frames.begin(run: state.run)
      let run = state.run
      state.thread = DedicatedThread.start(name: "decode-\(stream.id)") { [self] in
        decode(subscription, run: run)
      }
      return true
    }
    if started { logger.info("live decoder started", metadata: ["device": "\(stream.id)"]) }
  }

  /// Ends the decoder for good and waits for its thread (shutdown).
  func stopAndWait() {
    let (thread, subscription) = state.withLock { state in
      state.stopping = true
      return (state.thread, state.subscription)
    }
    subscription?.cancel()
    thread?.join()
  }

  private func decode(_ initial: StreamSubscription, run: Int) {
    var subscription = initial
    var decoder = PacketDecoder(device: stream.id, metrics: metrics, logger: logger)
    loop: while true {
      switch subscription.next(deadline: idleDeadline) {
      case .cancelled:
        break loop
      case .deadlinePassed:
        if stopIfIdle(run: run) { break loop }
      case .packets(let packets, let jumped, _):
        if jumped {
          decoder.restart()  // start clean at the keyframe
          metrics.recordJump()
        }
        for packet in packets {
          if decoder.willReopen(for: packet.codec) { stream.frames.begin(run: run) }  // no stale size or codec
          for frame in decoder.decode(packet) {
            stream.frames.publish(frame, run: run)
            metrics.recordReady(frame)
          }
        }
      }
    }
    state.withLock { state in
      if state.run == run { stream.frames.end(run: run) }
    }
  }

  private var idleDeadline: ContinuousClock.Instant { state.withLock { $0.lastDemand + idleTimeout } }

  /// Whether no one asked since the deadline; if so the decoder is over and a later demand starts anew.
  private func stopIfIdle(run: Int) -> Bool {
    let stopped = state.withLock { state -> Bool in
      guard ContinuousClock.now >= state.lastDemand + idleTimeout else { return false }
      state.thread = nil
      state.subscription = nil
      stream.frames.end(run: run)
      return true
    }
    if stopped { logger.info("live decoder stopped: no consumer for \(idleTimeout)", metadata: ["device": "\(stream.id)"]) }
    return stopped
  }
}
