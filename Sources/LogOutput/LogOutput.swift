import Foundation
import Logging

/// How both programs write their logs to stderr: swift-log's human lines, or one JSON object per line
/// (`--log-format json`) for journald, Loki and friends.
public enum LogFormat: String, Sendable, CaseIterable {
  case human
  case json

  /// Bootstraps swift-log once for the process.
  public func bootstrap() {
    switch self {
    case .human: LoggingSystem.bootstrap { StreamLogHandler.standardError(label: $0) }
    case .json: LoggingSystem.bootstrap { JSONLogHandler(label: $0) }
    }
  }
}

/// One JSON object per line on stderr: `time` (RFC 3339, UTC, milliseconds), `level`, `label`,
/// `message`, `source`, and the metadata as string fields.
public struct JSONLogHandler: LogHandler {
  public var metadata: Logger.Metadata = [:]
  public var logLevel: Logger.Level = .info
  public var metadataProvider: Logger.MetadataProvider?
  private let label: String

  public init(label: String) { self.label = label }

  public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
    get { metadata[key] }
    set { metadata[key] = newValue }
  }

  public func log(event: LogEvent) {
    var fields: [String: String] = [:]
    for (key, value) in metadata { fields[key] = "\(value)" }
    for (key, value) in metadataProvider?.get() ?? [:] { fields[key] = "\(value)" }
    for (key, value) in event.metadata ?? [:] { fields[key] = "\(value)" }
    fields["time"] = Self.timestamp()
    fields["level"] = event.level.rawValue
    fields["label"] = label
    fields["message"] = "\(event.message)"
    fields["source"] = event.source
    var line = (try? JSONSerialization.data(withJSONObject: fields, options: [.sortedKeys, .withoutEscapingSlashes])) ?? Data()
    line.append(UInt8(ascii: "\n"))
    FileHandle.standardError.write(line)
  }

  private static func timestamp() -> String {
    var now = timespec()
    clock_gettime(CLOCK_REALTIME, &now)
    var time = tm()
    var seconds = now.tv_sec
    gmtime_r(&seconds, &time)
    return String(
      format: "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", time.tm_year + 1900, time.tm_mon + 1, time.tm_mday, time.tm_hour,
      time.tm_min, time.tm_sec, now.tv_nsec / 1_000_000)
  }
}
