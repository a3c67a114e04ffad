import Logging
import RelayCore
import Synchronization

/// VideoBufferedImage's work: decode a stretch of a stream's ring (and recordings before it) on a
/// thread of its own and hand over the frames whose timestamps lie in the range. The ring is read
/// through a lossless subscription from the keyframe before the range to the packet that was its end
/// when the call came. The consumer sets the pace: at most `bufferedFrames` decoded frames wait for
/// it, and closing the queue (a cancelled or finished call) stops the thread at its next frame.
struct BufferedReplay {
  static let bufferedFrames = 2

  let stream: DeviceStream
  /// The ring's part: after `afterIndex` up to `lastIndex`, or nil when the ring has none of the range.
  let ring: (afterIndex: UInt64, lastIndex: UInt64)?
  /// Packets from recordings that come before the ring's, read on the replay thread.
  let recorded: (@Sendable () -> [StoredPacket])?
  let fromMs: Int64
  let toMs: Int64
  let metrics: DecoderMetrics
  let logger: Logger

  /// Starts decoding; read the frames from the returned queue (finish it to stop early) and join the
  /// thread when done.
  func start() -> (frames: HandoffQueue<LiveFrame>, thread: ThreadHandle) {
    let frames = HandoffQueue<LiveFrame>(capacity: Self.bufferedFrames)
    let thread = DedicatedThread.start(name: "replay-\(stream.id)") { [self] in
      var decoder = PacketDecoder(device: stream.id, metrics: metrics, logger: logger)
      func decode(_ packets: [StoredPacket]) -> Bool {
        for packet in packets {
          guard !frames.isFinished else { return false }
          for frame in decoder.decode(packet) where inRange(frame) {
            guard frames.push(frame) else { return false }
          }
        }
        return true
      }
      guard decode(recorded?() ?? []) else { return }
      if let ring {
        var subscription = stream.subscribe(.lossless, after: ring.afterIndex)
        while subscription.lastIndex < ring.lastIndex {
          guard case .packets(let packets, _, let missed) = subscription.next() else { break }
          if missed > 0 { logger.warning("replay of \(stream.id): \(missed) packets left the ring before they were read") }
          guard decode(packets.filter { $0.index <= ring.lastIndex }) else { return }
        }
      }
      for frame in decoder.flush() where inRange(frame) {
        guard frames.push(frame) else { return }
      }
      frames.finish()
    }
    return (frames, thread)
  }

  private func inRange(_ frame: LiveFrame) -> Bool {
    frame.timestampMs >= fromMs && frame.timestampMs <= toMs
  }
}

/// Bounds how many replays run at once (each holds a decoder thread).
final class ReplayLimiter: Sendable {
  private let running = Atomic<Int>(0)
  let limit: Int

  init(limit: Int) { self.limit = limit }

  func tryAcquire() -> Bool {
    if running.wrappingAdd(1, ordering: .relaxed).newValue > limit {
      running.wrappingSubtract(1, ordering: .relaxed)
      return false
    }
    return true
  }

  func release() { running.wrappingSubtract(1, ordering: .relaxed) }
}
