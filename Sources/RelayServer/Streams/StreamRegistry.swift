import Logging
import RelayCore
import Synchronization

/// Every stream seen since start, bounded in number, each with its live decoder.
final class StreamRegistry: Sendable {
  struct Entry: Sendable {
    let stream: DeviceStream
    let decoder: LiveDecoder
  }

  enum Refusal: Error, Equatable {
    case tooManyDevices(limit: Int)
  }

  private let configuration: ServerConfiguration
  private let metrics: DecoderMetrics
  private let logger: Logger
  private let entries = Mutex<[DeviceID: Entry]>([:])

  init(configuration: ServerConfiguration, metrics: DecoderMetrics, logger: Logger) {
    self.configuration = configuration
    self.metrics = metrics
    self.logger = logger
  }

  func entry(_ id: DeviceID) -> Entry? {
    entries.withLock { $0[id] }
  }

  /// The device's entry, created on first sight.
  func entryCreatingIfNeeded(_ id: DeviceID) throws(Refusal) -> Entry {
    try entries.withLock { entries throws(Refusal) in
      if let entry = entries[id] { return entry }
      guard entries.count < configuration.maxDevices else { throw .tooManyDevices(limit: configuration.maxDevices) }
      let stream = DeviceStream(id: id, ringLimits: configuration.ringLimits)
      let decoder = LiveDecoder(
        stream: stream, idleTimeout: configuration.decoderIdleTimeout, metrics: metrics, logger: logger)
      let entry = Entry(stream: stream, decoder: decoder)
      entries[id] = entry
      return entry
    }
  }

  /// All entries, sorted by device id.
  var all: [Entry] {
    entries.withLock { Array($0.values) }.sorted { $0.stream.id.rawValue < $1.stream.id.rawValue }
  }

  /// Stops every live decoder and waits for their threads (shutdown).
  func stopDecoders() {
    for entry in all { entry.decoder.stopAndWait() }
  }
}
