import Foundation
import Logging
import Media
import RelayCore
import Synchronization

/// Records one device: its packets as received (no re-encode) into fragmented MP4 segments under
/// `directory`, from the first keyframe stored after `start` until `stop`. Runs on a thread of its own.
/// A write error (a full disk) ends the recording and is kept in `failure`; ingest is not affected.
final class Recorder: Sendable {
  struct Settings: Sendable {
    var segmentMs: Int64 = 60_000
  }

  let device: Device
  let directory: String
  private let settings: Settings
  private let metrics: RecordingMetrics
  private let logger: Logger
  private let onSegmentClosed: @Sendable () -> Void

  private struct State {
    /// Set by `stop`: record everything stored up to this index, then close.
    var stopAfter: UInt64?
    var finished = false
    var waiters: [CheckedContinuation<Void, Never>] = []
    var failure: String?
    var openSegment: String?
  }
  private let state = Mutex(State())

  init(
    device: Device, directory: String, settings: Settings, metrics: RecordingMetrics, logger: Logger,
    onSegmentClosed: @escaping @Sendable () -> Void
  ) {
    self.device = device
    self.directory = directory
    self.settings = settings
    self.metrics = metrics
    self.logger = logger
    self.onSegmentClosed = onSegmentClosed
  }

  func start() {
    let startAfter = device.newestIndex
    DedicatedThread.start(name: "record-\(device.id)") { [self] in record(after: startAfter) }
  }

  /// Records what was stored before this call, closes the segment cleanly, then returns.
  func stop() async {
    let stopAfter = device.newestIndex
    await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
      let finished = state.withLock { state in
        state.stopAfter = state.stopAfter ?? stopAfter
        if !state.finished { state.waiters.append(done) }
        return state.finished
      }
      if finished { done.resume() }
    }
  }

  var isRecording: Bool { state.withLock { !$0.finished } }
  var failure: String? { state.withLock { $0.failure } }
  /// The segment being written (retention leaves it alone).
  var openSegment: String? { state.withLock { $0.openSegment } }

  // MARK: The recording thread

  private func record(after startIndex: UInt64) {
    var follower = PacketFollower(device: device, after: startIndex)
    var segment: Segment?
    var waitingForKeyframe = true
    do {
      while let (packets, gap) = follower.next(stop: shouldStop) {
        if gap {
          logger.warning("recording of \(device.id) fell behind the ring: frames are missing, resuming at a keyframe")
        }
        for packet in packets {
          if waitingForKeyframe {
            guard packet.isKeyframe else { continue }
            waitingForKeyframe = false
          }
          if let current = segment, packet.isKeyframe,
            packet.codec !== current.codec || packet.timestampMs - current.startMs >= settings.segmentMs
          {
            try close(current)
            segment = nil
          }
          if segment == nil {
            segment = try Segment(first: packet, directory: directory)
            state.withLock { $0.openSegment = segment?.path }
            logger.info("recording segment", metadata: ["device": "\(device.id)", "path": "\(segment!.path)"])
          }
          try segment!.write(packet)
          metrics.frameRecorded(device.id)
        }
      }
      if let segment { try close(segment) }
      finish(failure: nil)
    } catch {
      let message = "recording stopped: \(error)"
      logger.error("\(message)", metadata: ["device": "\(device.id)"])
      metrics.failed(device.id)
      try? segment?.muxer.finish()
      finish(failure: message)
    }
  }

  private func shouldStop(_ lastIndex: UInt64) -> Bool {
    state.withLock { state in state.stopAfter.map { lastIndex >= $0 } ?? false }
  }

  private func close(_ segment: Segment) throws(MediaError) {
    try segment.muxer.finish()
    state.withLock { $0.openSegment = nil }
    onSegmentClosed()
  }

  private func finish(failure: String?) {
    let waiters = state.withLock { state in
      state.finished = true
      state.failure = failure
      state.openSegment = nil
      defer { state.waiters.removeAll() }
      return state.waiters
    }
    for waiter in waiters { waiter.resume() }
  }
}
