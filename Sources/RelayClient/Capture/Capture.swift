import Foundation
import Logging
import Media
import RelayCore
import Synchronization

/// Runs a source on a capture thread of its own and hands its packets to the publisher.
/// A camera (RTSP) that fails is reopened with back-off; a file, pattern or synthetic source that
/// fails to open ends the capture with the error.
final class Capture: Sendable {
  enum Event: Sendable {
    case opened(CodecDescription)
    case packet(EncodedPacket)
    case status(CaptureState, error: String, failingStreak: Int64)
    case ended(error: String?)
  }

  /// Takes each event on the capture thread (it may block there: back-pressure); false stops capturing.
  /// Called directly rather than through a queue to a task of its own, which cost a task hand-off per
  /// frame (relay-client's CPU per frame 2-4% lower without it, docs/performance.md).
  typealias Sink = @Sendable (Event) -> Bool
  private let spec: SourceSpec
  private let pictures: PictureRequest?
  private let maxFrames: Int?
  private let backoff: Backoff
  private let logger: Logger
  private let interrupt = MediaInterrupt()
  private let stopped = StopSignal()
  private let thread = Locked<ThreadHandle?>(nil)

  init(spec: SourceSpec, pictures: PictureRequest? = nil, maxFrames: Int?, backoff: Backoff, logger: Logger) {
    self.spec = spec
    self.pictures = pictures
    self.maxFrames = maxFrames
    self.backoff = backoff
    self.logger = logger
  }

  func start(delivering sink: @escaping Sink) {
    thread.value = DedicatedThread.start(name: "capture") { [self] in run(sink) }
  }

  /// Stops capturing: a blocked read returns at once; the packet in hand still goes to the sink.
  func stop() {
    stopped.stop()
    interrupt.set()
  }

  /// Stops and waits for the capture thread to end. A sink that blocks must be let go first.
  func stopAndWait() async {
    stop()
    await thread.value?.joined()
  }

  private var isStopped: Bool { stopped.isStopped }

  private func run(_ sink: Sink) {
    var captured = 0
    var failures = 0
    var endError: String? = nil
    while !isStopped {
      do {
        var source = try spec.open(interrupt: interrupt)
        if let pictures { source = try DecodingSource(source, request: pictures) }
        guard sink(.opened(source.codec)) else { return }
        if failures > 0 { _ = sink(.status(.running, error: "", failingStreak: 0)) }
        failures = 0
        while !isStopped, let packet = try source.nextPacket() {
          guard sink(.packet(packet)) else { return }
          captured += 1
          if let maxFrames, captured >= maxFrames { stop() }
        }
        if isStopped || !spec.isCamera { break }
        throw MediaError(operation: "read", message: "the stream ended")
      } catch {
        if isStopped { break }
        failures += 1
        let message = "\(spec.kindAndLabel.label): \(error)"
        guard spec.isCamera else {
          endError = message
          break
        }
        let delay = backoff.delay(attempt: failures - 1)
        logger.warning("camera failed, reopening in \(String(format: "%.1f", delay))s: \(message)")
        _ = sink(.status(.reconnecting, error: message, failingStreak: Int64(failures)))
        stopped.wait(seconds: delay)
      }
    }
    _ = sink(.ended(error: endError))
  }
}

extension SourceSpec {
  /// Live sources do not wait: past the queue bound their oldest frames are dropped. Files and
  /// synthetic frames wait for room instead. The test pattern stands in for a camera, so it is live.
  var isLive: Bool {
    switch self {
    case .rtsp, .v4l2, .testPattern: return true
    case .file, .synthetic: return false
    }
  }

  /// Cameras come and go and are reopened; files and generated sources are not.
  var isCamera: Bool {
    switch self {
    case .rtsp, .v4l2: return true
    case .testPattern, .file, .synthetic: return false
    }
  }
}
