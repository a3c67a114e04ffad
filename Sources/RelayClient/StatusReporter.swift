import Foundation
import RelayCore

/// Once a second: frames sent/acked/in flight, fps, kbit/s and ack round-trip time. A status line
/// redrawn in place on a terminal, a plain line on stderr otherwise (logs, systemd, tests).
struct StatusReporter {
  let publisher: Publisher
  private let isTerminal = isatty(STDERR_FILENO) != 0

  init(publisher: Publisher) { self.publisher = publisher }

  /// Reports until cancelled.
  func run() async {
    var previous = publisher.snapshot
    while true {
      do { try await Task.sleep(for: .seconds(1)) } catch { return }
      let now = publisher.snapshot
      let seconds = max(0.001, now.elapsedSeconds - previous.elapsedSeconds)
      let fps = Double(now.stats.framesAcked - previous.stats.framesAcked) / seconds
      let kbps = Double(now.stats.bytesAcked - previous.stats.bytesAcked) * 8 / 1000 / seconds
      let rtt = now.stats.roundTrips.percentile(50).map { String(format: "%.1fms", $0) } ?? "-"
      let line = "\(publisher.configuration.device) sent \(now.stats.framesSent) acked \(now.stats.framesAcked)"
        + " in-flight \(now.inFlight) queued \(now.queued) dropped \(now.stats.framesDropped) | \(String(format: "%.1f", fps)) fps \(Int(kbps)) kbit/s | ack rtt p50 \(rtt)"
      FileHandle.standardError.write(Data((isTerminal ? "\r\u{1B}[K" + line : "status: " + line + "\n").utf8))
      previous = now
    }
  }
}
