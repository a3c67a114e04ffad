import Logging
import RelayCore
import Synchronization

/// VideoBufferedImage's work: decode a slice of a device's ring (and recordings before it) on a thread of its own and hand over the
/// frames whose timestamps lie in the range. The consumer sets the pace: at most `bufferedFrames`
/// decoded frames wait for it, and closing the queue (a cancelled or finished call) stops the thread
/// at its next frame.
struct BufferedReplay {
  static let bufferedFrames = 2

  let packets: [StoredPacket]
  /// Packets from recordings that come before `packets`, read on the replay thread.
  let recorded: (@Sendable () -> [StoredPacket])?
  let fromMs: Int64
  let toMs: Int64
  let device: DeviceID
  let metrics: DecoderMetrics
  let logger: Logger

  /// Starts decoding; read the frames from the returned queue and finish it when done.
  func start() -> HandoffQueue<LiveFrame> {
    let frames = HandoffQueue<LiveFrame>(capacity: Self.bufferedFrames)
    DedicatedThread.start(name: "replay-\(device)") { [self] in
      var decoder = PacketDecoder(device: device, metrics: metrics, logger: logger)
      for packet in (recorded?() ?? []) + packets {
        guard !frames.isFinished else { return }
        for frame in decoder.decode(packet) where inRange(frame) {
          guard frames.push(frame) else { return }
        }
      }
      for frame in decoder.flush() where inRange(frame) {
        guard frames.push(frame) else { return }
      }
      frames.finish()
    }
    return frames
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
