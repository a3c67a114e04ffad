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
      let line = Self.line(publisher.configuration.device.rawValue, from: previous, to: now)
      FileHandle.standardError.write(Data((isTerminal ? "\r\u{1B}[K" + line : "status: " + line + "\n").utf8))
      previous = now
    }
  }

  typealias Snapshot = (stats: PublishStats, inFlight: Int, queued: Int, elapsedSeconds: Double)

  /// The rates between two snapshots a second apart, as the status shows them.
  struct Rates {
    let fps: String
    let kbps: String
    let rttP50: String

    init(from previous: Snapshot, to now: Snapshot) {
      let seconds = max(0.001, now.elapsedSeconds - previous.elapsedSeconds)
      fps = String(format: "%.1f", Double(now.stats.framesAcked - previous.stats.framesAcked) / seconds)
      kbps = String(Int(Double(now.stats.bytesAcked - previous.stats.bytesAcked) * 8 / 1000 / seconds))
      rttP50 = now.stats.roundTrips.percentile(50).map { String(format: "%.1fms", $0) } ?? "-"
    }
  }

  static func line(_ device: String, from previous: Snapshot, to now: Snapshot) -> String {
    let rates = Rates(from: previous, to: now)
    return "\(device) sent \(now.stats.framesSent) acked \(now.stats.framesAcked)"
      + " in-flight \(now.inFlight) queued \(now.queued) dropped \(now.stats.framesDropped) | \(rates.fps) fps \(rates.kbps) kbit/s | ack rtt p50 \(rates.rttP50)"
  }
}

/// A gateway's status: one line per camera each second on stderr, or a table redrawn in place on a
/// terminal.
struct GatewayStatus {
  let publishers: [Publisher]
  private let isTerminal = isatty(STDERR_FILENO) != 0

  func run() async {
    var previous = publishers.map(\.snapshot)
    var drawn = 0
    while true {
      do { try await Task.sleep(for: .seconds(1)) } catch { return }
      let now = publishers.map(\.snapshot)
      if isTerminal {
        var table = drawn > 0 ? "\u{1B}[\(drawn)A" : ""
        table += "\r\u{1B}[K" + "camera".padding(toLength: 20, withPad: " ", startingAt: 0)
          + ["sent", "acked"].map { $0.leftPadded(10) }.joined() + "queued".leftPadded(7) + "dropped".leftPadded(9)
          + "fps".leftPadded(7) + "kbit/s".leftPadded(11) + "rtt p50".leftPadded(9) + "\n"
        for (index, publisher) in publishers.enumerated() {
          table += "\r\u{1B}[K" + Self.row(publisher.configuration.device.rawValue, previous[index], now[index]) + "\n"
        }
        drawn = publishers.count + 1
        FileHandle.standardError.write(Data(table.utf8))
      } else {
        let lines = publishers.enumerated().map { index, publisher in
          "status: " + StatusReporter.line(publisher.configuration.device.rawValue, from: previous[index], to: now[index]) + "\n"
        }
        FileHandle.standardError.write(Data(lines.joined().utf8))
      }
      previous = now
    }
  }

  private static func row(_ device: String, _ previous: StatusReporter.Snapshot, _ now: StatusReporter.Snapshot) -> String {
    let rates = StatusReporter.Rates(from: previous, to: now)
    return String(device.prefix(20)).padding(toLength: 20, withPad: " ", startingAt: 0)
      + [now.stats.framesSent, now.stats.framesAcked].map { String($0).leftPadded(10) }.joined()
      + String(now.queued).leftPadded(7) + String(now.stats.framesDropped).leftPadded(9)
      + rates.fps.leftPadded(7) + rates.kbps.leftPadded(11) + rates.rttP50.leftPadded(9)
  }
}

extension String {
  fileprivate func leftPadded(_ width: Int) -> String {
    count >= width ? " " + self : String(repeating: " ", count: width - count) + self
  }
}
