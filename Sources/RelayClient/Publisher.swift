import Foundation
import GRPCCore
import Logging
import RelayCore

/// Streams one source to a server through a `FrameSender`: capture → queue → one watched stream attempt
/// after another. Capture never waits for the network: while the server is away frames collect in the
/// queue (bounded), and each new stream resumes where the server says it is. Reconnects, back-off and
/// the watchdog live here, once, whatever the wire protocol.
public final class Publisher: Sendable {
  public let configuration: PublisherConfiguration
  private let logger: Logger
  private let capture: Capture
  private let sender: any FrameSender
  /// The queue's copy on disk (`--spool`), if any.
  private let spool: Spool?
  let state: PublishState
  private let startedNs = WallClock.monotonicNs()

  /// A native (`FrameRelay/Publish`) publisher. With a spool, it resumes the spool's session.
  public convenience init(configuration: PublisherConfiguration, spool: Spool? = nil, logger: Logger) {
    self.init(
      configuration: configuration,
      sender: NativeSender(configuration: configuration, sessionID: spool?.sessionID ?? UUID().uuidString, logger: logger),
      spool: spool, logger: logger)
  }

  /// A publisher of the minimal protocol (`/video/Analyse`); `configuration.pictures` gives the shape.
  public static func simple(
    configuration: PublisherConfiguration, sendsDeviceID: Bool, spool: Spool? = nil, logger: Logger
  ) -> Publisher {
    Publisher(
      configuration: configuration,
      sender: SimpleSender(configuration: configuration, sendsDeviceID: sendsDeviceID, logger: logger), spool: spool,
      logger: logger)
  }

  /// A publisher that feeds an AVA extension; `configuration.pictures` gives the frames' format.
  public static func ava(
    configuration: PublisherConfiguration, settings: AVASenderSettings, spool: Spool? = nil, logger: Logger
  ) -> Publisher {
    Publisher(
      configuration: configuration, sender: AVASender(configuration: configuration, settings: settings, logger: logger),
      spool: spool, logger: logger)
  }

  /// The spool `configuration` asks for, opened (what an earlier run left in it is read now).
  public static func openSpool(for configuration: PublisherConfiguration, logger: Logger) throws(SpoolError) -> Spool? {
    try configuration.spool.map { spool throws(SpoolError) in try Spool(spool, device: configuration.device, logger: logger) }
  }

  init(configuration: PublisherConfiguration, sender: any FrameSender, spool: Spool? = nil, logger: Logger) {
    self.configuration = configuration
    self.logger = logger
    self.sender = sender
    self.spool = spool
    self.capture = Capture(
      spec: configuration.source, pictures: configuration.pictures, maxFrames: configuration.maxFrames,
      backoff: configuration.cameraBackoff, logger: logger)
    let queue: FrameQueue
    if let spool {
      // The spool bounds the queue (on disk); the memory bound only says how much of it stays in memory.
      let limits = Outbox.Limits(
        maxBytes: spool.configuration.maxBytes, maxSeconds: .infinity, maxResidentBytes: configuration.queueMaxBytes)
      queue = FrameQueue(limits: limits, retainsGOP: sender.resumesSessions, journal: spool, restoring: spool.restored.queue)
    } else {
      queue = FrameQueue(
        limits: .init(maxBytes: configuration.queueMaxBytes, maxSeconds: configuration.queueMaxSeconds),
        retainsGOP: sender.resumesSessions)
    }
    self.state = PublishState(queue: queue, spool: spool, metrics: CameraMetrics(device: configuration.device))
    state.withLock { $0.stats.framesRestored = queue.restoredCount }
  }

  /// Stops capturing and finishes once the frames captured so far are acked or the stop timeout passes.
  public func stop() {
    let first = state.withLock { values -> Bool in
      defer { values.stopping = true }
      return !values.stopping
    }
    guard first else { return }
    logger.info("stopping: waiting up to \(configuration.stopDrainTimeout) for unacknowledged frames")
    capture.stop()
    armDrainDeadline(configuration.stopDrainTimeout)
    state.wake()
  }

  public func run() async throws -> PublishSummary {
    capture.start { [self] event in take(event) }
    defer {
      sender.finish()
      spool?.close()
    }
    do {
      let summary = try await publish()
      await stopCapture()
      return summary
    } catch {
      await stopCapture()
      throw error
    }
  }

  /// The capture thread may be waiting for room in the queue: let it go, then wait for it to end.
  private func stopCapture() async {
    state.withLock { $0.captureReleased = true }
    state.wake()
    await capture.stopAndWait()
  }

  private func publish() async throws -> PublishSummary {
    guard let codec = try await firstCodec() else {
      // Stopped while the camera was still not ready: a stop, not a failure (a gateway's other cameras ran).
      if state.withLock({ $0.stopping }) { return summary }
      let error = state.withLock { $0.captureError } ?? "the source ended before its first frame"
      throw PublishError.source(error)
    }
    logger.info(
      "capturing",
      metadata: ["source": "\(configuration.source.kindAndLabel.label)", "codec": "\(codec.name) \(codec.width)x\(codec.height)"])
    try await withThrowingDiscardingTaskGroup { group in
      if configuration.reportsStatus { group.addTask { await StatusReporter(publisher: self).run() } }
      try await publishUntilDone()
      group.cancelAll()
    }
    if let error = state.withLock({ $0.captureError }) { logger.error("source failed: \(error)") }
    return summary
  }

  // MARK: Capture → queue

  /// Waits until the source opened (its codec) or the capture ended without opening (nil).
  private func firstCodec() async throws -> CodecDescription? {
    try await state.waitUntil { $0.openedCodec != nil || $0.captureEnded }
    return state.withLock { $0.openedCodec }
  }

  /// Takes one event on the capture thread: into the queue at once, whether or not a stream is open,
  /// and wakes whoever waits for it. False: the run is over, stop capturing.
  private func take(_ event: Capture.Event) -> Bool {
    switch event {
    case .packet(let packet):
      if !configuration.source.isLive {
        // A file or synthetic source can wait: hold the reader back rather than drop frames.
        state.blockUntil { $0.queue.hasRoom(for: packet.data.count) || $0.stopping || $0.captureReleased }
      }
      let (dropped, gops) = state.withLock { values -> (Int, Int) in
        values.stats.framesCaptured += 1
        let gopsBefore = values.queue.droppedGOPs
        let dropped = values.queue.capture(packet)
        values.stats.framesDropped = values.queue.droppedFrames
        return (dropped, values.queue.droppedGOPs - gopsBefore)
      }
      if dropped > 0 {
        state.metrics.droppedFrames.increment(by: dropped)
        state.metrics.droppedGOPs.increment(by: gops)
        logger.warning(
          "queue bound reached (\(configuration.queueMaxBytes) bytes / \(configuration.queueMaxSeconds) s): dropped \(dropped) frames, oldest GOP first")
      }
    case .opened(let codec):
      state.withLock { values in
        values.queue.sourceOpened(codec)
        values.openedCodec = codec
      }
    case .status(let capture, let error, let streak):
      let opened = state.withLock { values -> Bool in
        guard values.openedCodec != nil else { return false }
        values.lastCapture = .init(state: capture, error: error, failingStreak: streak)
        values.captureVersion += 1
        return true
      }
      if !opened { logger.warning("camera not ready: \(error)") }
    case .ended(let error):
      state.withLock { values in
        values.captureEnded = true
        values.captureError = error
        values.lastCapture = .init(state: error == nil ? .stopped : .failed, error: error ?? "", failingStreak: 0)
        values.captureVersion += 1
      }
      armDrainDeadline(configuration.endDrainTimeout)
    }
    state.wake()
    return !state.withLock { $0.captureReleased }
  }

  // MARK: Stream attempts

  private func publishUntilDone() async throws {
    while !state.isFinished {
      let attempt = state.withLock { values -> UInt64 in
        values.attempt += 1
        values.accepted = false
        values.responseEnded = false
        values.lastProgressNs = WallClock.monotonicNs()
        return values.attempt
      }
      do {
        try await runWatched(attempt)
      } catch {
        if let fatal = PublishError(fatal: error) { throw fatal }
        if state.isFinished { return }
        let delay = state.withLock { values -> Double in
          if values.failedAtNs == nil { values.failedAtNs = WallClock.monotonicNs() }
          values.failures += 1
          return error is ConnectionHung ? 0 : configuration.reconnectBackoff.delay(attempt: values.failures - 1)
        }
        let reason = await ConnectionDiagnosis.reason(error, server: configuration.server, security: configuration.security)
        logger.error(
          "cannot reach relay-server at \(configuration.server): \(reason); retrying in \(String(format: "%.1f", delay))s")
        try await waitBeforeReconnecting(seconds: delay, unreachable: AttemptFailure.isUnreachable(error))
      }
    }
  }

  /// One attempt, watched. When the watchdog gives up, the attempt is cancelled and left to finish on
  /// its own: a connect hanging under a silent partition must not hold the next attempt up.
  private func runWatched(_ attempt: UInt64) async throws {
    let stream = Task { try await sender.run(attempt: attempt, state: state) }
    let reconnecting = state.withLock { $0.failedAtNs != nil }
    let watchdog = Task { try await watch(probing: reconnecting) }
    defer { watchdog.cancel() }
    try await withTaskCancellationHandler {
      try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
        let outcome = FirstOutcome(continuation)
        Task {
          do {
            try await stream.value
            outcome.resume(with: .success(()))
          } catch {
            outcome.resume(with: .failure(error))
          }
        }
        Task {
          do {
            try await watchdog.value
          } catch is CancellationError {
          } catch {
            stream.cancel()
            outcome.resume(with: .failure(error))
          }
        }
      }
    } onCancel: {
      stream.cancel()
    }
  }

  /// Fails the attempt when the server does not take its opening message in time, or when frames are
  /// in flight and no ack comes. While reconnecting, also when the network heals before the attempt's
  /// own connection (hung in a partition) got anywhere.
  private func watch(probing: Bool) async throws {
    let probe = ServerProbe(server: configuration.server)
    // While reconnecting: a probe that sees the network heal before this attempt got an answer.
    var reconnecting = probing ? HealWatch(probe) : nil
    defer { reconnecting?.cancel() }
    // An accepted stream whose acks stopped: if a probe sees the network fail and heal meanwhile, the
    // connection would recover only at TCP's retransmission pace (or at the ack timeout); reconnect now.
    var stalled: HealWatch?
    defer { stalled?.cancel() }
    while true {
      try await Task.sleep(for: .milliseconds(200))
      if let watch = reconnecting, watch.healed {
        if !state.withLock({ $0.accepted }) { throw ConnectionHung() }
        reconnecting = nil
      }
      let (accepted, inFlight, idleNs) = state.withLock {
        ($0.accepted, $0.queue.inFlightCount, WallClock.monotonicNs() - $0.lastProgressNs)
      }
      if accepted, let watch = reconnecting {  // the attempt got through: no more probing
        watch.cancel()
        reconnecting = nil
      }
      let idle = Duration.nanoseconds(Int64(idleNs))
      if !accepted && idle > configuration.helloTimeout {
        throw StreamStalled(description: "no answer to the stream's opening within \(configuration.helloTimeout)")
      }
      if accepted && inFlight > 0 && idle > configuration.ackTimeout {
        throw StreamStalled(description: "no ack for \(configuration.ackTimeout) with \(inFlight) frames in flight")
      }
      if accepted && inFlight > 0 && idle > .milliseconds(600) {
        if stalled?.healed == true { throw ConnectionHung() }
        // Two failed probes in a row (half a second unreachable): a congested link's slow connect is no cut.
        if stalled == nil { stalled = HealWatch(probe, failures: 2) }
      } else if let watch = stalled {  // acks flow again
        watch.cancel()
        stalled = nil
      }
    }
  }

  // MARK: What every sender reports

  /// A stream was accepted and the server holds everything up to `resumeAfter`: those count as acked
  /// (their acks may never have reached us), the rest is sent again.
  static func resumed(after resumeAfter: UInt64, state: PublishState, server: HostPort, logger: Logger) {
    let (acked, resending, reconnectMs) = state.withLock { values -> (Int, Int, Int?) in
      let acked = values.queue.restart(after: resumeAfter)
      values.stats.framesAcked += acked.frames
      values.stats.bytesAcked += acked.bytes
      values.stats.framesDropped = values.queue.droppedFrames
      values.failures = 0
      defer { values.failedAtNs = nil }
      guard let failedAt = values.failedAtNs else { return (acked.frames, values.queue.count, nil) }
      let ms = Int((WallClock.monotonicNs() - failedAt) / 1_000_000)
      values.stats.reconnects += 1
      values.stats.reconnectMs.append(ms)
      return (acked.frames, values.queue.count, ms)
    }
    state.metrics.acked.increment(by: acked)
    if let reconnectMs {
      state.metrics.reconnects.increment()
      state.metrics.resent.increment(by: resending)
      logger.notice("reconnected to relay-server at \(server) after \(reconnectMs) ms; resending \(resending) frames")
    }
  }

  /// The server acknowledged everything up to `sequence`.
  @discardableResult
  static func acknowledged(upTo sequence: UInt64, at now: UInt64, state: PublishState) -> Outbox.Acknowledged {
    let acked = state.withLock { values -> Outbox.Acknowledged in
      let acked = values.queue.acknowledge(upTo: sequence)
      values.stats.framesAcked += acked.frames
      values.stats.bytesAcked += acked.bytes
      values.lastProgressNs = now
      for sentAt in acked.sentTimes { values.stats.roundTrips.record(Double(now &- sentAt) / 1e6) }
      return acked
    }
    state.metrics.acked.increment(by: acked.frames)
    for sentAt in acked.sentTimes { state.metrics.ackRoundTrip.recordNanoseconds(Int64(now &- sentAt)) }
    return acked
  }

  // MARK: Timing

  private func armDrainDeadline(_ timeout: Duration) {
    Task {
      try? await Task.sleep(for: timeout)
      state.withLock { $0.drainDeadlinePassed = true }
      state.wake()
    }
  }

  /// The back-off between attempts; a finished run (stop, drain deadline) ends it at once, and so does
  /// the network healing (a probe that failed answers again).
  private func waitBeforeReconnecting(seconds: Double, unreachable: Bool) async throws {
    guard seconds > 0 else { return }
    try await withThrowingTaskGroup(of: Void.self) { group in
      group.addTask { try await Task.sleep(for: .milliseconds(Int(seconds * 1000))) }
      group.addTask { try await self.state.waitUntil { $0.isFinished } }
      group.addTask { try await ServerProbe(server: self.configuration.server).waitForHeal(afterFailure: unreachable) }
      try await group.next()
      group.cancelAll()
    }
  }

  // MARK: Figures

  /// Bytes of frames captured and not yet acknowledged.
  public var queuedBytes: Int { state.withLock { $0.queue.byteCount } }

  var snapshot: (stats: PublishStats, inFlight: Int, queued: Int, elapsedSeconds: Double) {
    state.withLock {
      ($0.stats, $0.queue.inFlightCount, $0.queue.count, Double(WallClock.monotonicNs() - startedNs) / 1e9)
    }
  }

  public var summary: PublishSummary {
    let (stats, _, _, seconds) = snapshot
    return PublishSummary(
      device: configuration.device.rawValue, framesCaptured: stats.framesCaptured,
      framesDropped: stats.framesDropped, framesSent: stats.framesSent, framesAcked: stats.framesAcked,
      bytesSent: stats.bytesSent, seconds: seconds, fps: seconds > 0 ? Double(stats.framesAcked) / seconds : 0,
      framesLost: stats.framesLost, framesRestored: stats.framesRestored, ackRttP50Ms: stats.roundTrips.percentile(50) ?? 0,
      ackRttP99Ms: stats.roundTrips.percentile(99) ?? 0,
      reconnects: stats.reconnects, reconnectMs: stats.reconnectMs)
  }
}

/// Why a publish run ended with a failure.
public enum PublishError: Error, CustomStringConvertible {
  case source(String)
  case refused(RPCError)
  /// A spooled frame could not be read back (the disk failed or the file was changed under us).
  case spool(SpoolError)

  /// Errors no retry can fix: the server refuses what we send.
  init?(fatal error: any Error) {
    if let error = error as? PublishError {
      self = error
      return
    }
    if let error = error as? SpoolError {
      // A frame dropped while being read back only ends the attempt: the next one starts cleanly.
      guard !error.frameGone else { return nil }
      self = .spool(error)
      return
    }
    guard let rpc = error as? RPCError else { return nil }
    switch rpc.code {
    case .invalidArgument, .resourceExhausted, .permissionDenied, .unauthenticated, .unimplemented:
      self = .refused(rpc)
    default:
      return nil
    }
  }

  public var description: String {
    switch self {
    case .source(let message): return "cannot capture: \(message)"
    case .refused(let error): return "relay-server refused the stream (\(error.code)): \(error.message)"
    case .spool(let error): return "the spool failed: \(error)"
    }
  }
}

/// Resumes a continuation with the first outcome offered and ignores the rest.
private final class FirstOutcome: Sendable {
  private let continuation: Locked<CheckedContinuation<Void, any Error>?>

  init(_ continuation: CheckedContinuation<Void, any Error>) {
    self.continuation = Locked(continuation)
  }

  func resume(with result: Result<Void, any Error>) {
    let first = continuation.withLock { continuation in
      defer { continuation = nil }
      return continuation
    }
    first?.resume(with: result)
  }
}
