import RelayCore

/// One stream attempt of one wire protocol (native Publish, AVA, the minimal protocol):
/// it connects, opens the stream, sends what the shared queue holds as its protocol allows, and
/// records acks into the queue, until the capture is finished, the stream ends or it fails.
///
/// Reconnects, back-off and the attempt watchdog are the Publisher's and the same for every sender:
/// a sender reports progress in `state` (`accepted`, `lastProgressNs`, `responseEnded` for `attempt`)
/// and throws when its stream fails.
protocol FrameSender: Sendable {
  func run(attempt: UInt64, state: PublishState) async throws
  /// The run is over: release what attempts may still hold (an abandoned attempt ends on its own).
  func finish()
  /// The protocol resumes sessions (a resume point, declared gaps): the queue keeps the current GOP's
  /// acknowledged frames, so a new server can be given the GOP from its keyframe.
  var resumesSessions: Bool { get }
}

extension FrameSender {
  func finish() {}
  var resumesSessions: Bool { false }
}
