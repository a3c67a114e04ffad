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

  let stream: DeviceStream
  let directory: String
  private let settings: Settings
  private let metrics: RecordingMetrics
  private let logger: Logger
  private let onSegmentClosed: @Sendable () -> Void

  private struct State {
    /// Set by `stop`: record everything stored up to this index, then close.
    var stopAfter: UInt64?
    var finished = false
    var failure: String?
    var openSegment: String?
    var subscription: StreamSubscription.Canceller?
    var thread: ThreadHandle?
  }
  private let state = Mutex(State())

  init(
    stream: DeviceStream, directory: String, settings: Settings, metrics: RecordingMetrics, logger: Logger,
    onSegmentClosed: @escaping @Sendable () -> Void
  ) {
    self.stream = stream
    self.directory = directory
    self.settings = settings
    self.metrics = metrics
    self.logger = logger
    self.onSegmentClosed = onSegmentClosed
  }

  func start() {
    let subscription = stream.subscribe(.lossless, after: stream.newestIndex)
    state.withLock { state in
      state.subscription = subscription.canceller
      state.thread = DedicatedThread.start(name: "record-\(stream.id)") { [self] in record(subscription) }
    }
  }

  /// Records what was stored before this call, closes the segment cleanly, then returns once the
  /// recording thread has ended.
  func stop() async {
    let stopAfter = stream.newestIndex
    let (subscription, thread) = state.withLock { state in
      state.stopAfter = state.stopAfter ?? stopAfter
      return (state.subscription, state.thread)
    }
    subscription?.cancel()
    await thread?.joined()
  }

  var isRecording: Bool { state.withLock { !$0.finished } }
  var failure: String? { state.withLock { $0.failure } }
  /// The segment being written (retention leaves it alone).
  var openSegment: String? { state.withLock { $0.openSegment } }

  // MARK: The recording thread

  private func record(_ initial: StreamSubscription) {
    var subscription = initial
    var segment: Segment?
    var waitingForKeyframe = true
    var transcoder = H264Transcoder()  // pictures (AVA, minimal protocol) are recorded as H.264
    do {
      while let received = nextPackets(&subscription) {
        for original in received { for packet in try transcoder.packets(for: original) {
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
            logger.info("recording segment", metadata: ["device": "\(stream.id)", "path": "\(segment!.path)"])
          }
          try segment!.write(packet)
          metrics.frameRecorded(stream.id)
        }}
      }
      if let segment { try close(segment) }
      finish(failure: nil)
    } catch {
      let message = "recording stopped: \(error)"
      logger.error("\(message)", metadata: ["device": "\(stream.id)"])
      metrics.failed(stream.id)
      try? segment?.muxer.finish()
      finish(failure: message)
    }
  }

  /// The next packets to write, or nil once everything stored before `stop` is written.
  private func nextPackets(_ subscription: inout StreamSubscription) -> [StoredPacket]? {
    let stopAfter = state.withLock { $0.stopAfter }
    if let stopAfter, subscription.lastIndex >= stopAfter { return nil }
    // Told to stop: what is already stored, without waiting for more.
    let event = stopAfter == nil ? subscription.next() : subscription.nextAvailable()
    switch event {
    case .packets(let packets, _, let missed)?:
      if missed > 0 {
        logger.warning("recording of \(stream.id) fell behind the ring: \(missed) frames are missing, resuming at a keyframe")
      }
      return stopAfter.map { last in packets.filter { $0.index <= last } } ?? packets
    case .cancelled?:
      return nextPackets(&subscription)  // stop was called: drain up to its index
    case .deadlinePassed?, nil:
      return nil
    }
  }

  private func close(_ segment: Segment) throws(MediaError) {
    try segment.muxer.finish()
    state.withLock { $0.openSegment = nil }
    onSegmentClosed()
  }

  private func finish(failure: String?) {
    state.withLock { state in
      state.finished = true
      state.failure = failure
      state.openSegment = nil
    }
  }
}
