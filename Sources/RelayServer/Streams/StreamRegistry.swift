import Logging
import RelayCore
import Synchronization

/// Every device seen since start, bounded in number.
final class DeviceRegistry: Sendable {
  struct Entry: Sendable {
    let device: Device
    let decoder: LiveDecoder
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
  func entryCreatingIfNeeded(_ id: DeviceID) throws(IngestError) -> Entry {
    try entries.withLock { entries throws(IngestError) in
      if let entry = entries[id] { return entry }
      guard entries.count < configuration.maxDevices else { throw .tooManyDevices(limit: configuration.maxDevices) }
      let device = Device(id: id, ringLimits: configuration.ringLimits)
      let decoder = LiveDecoder(
        device: device, idleTimeout: configuration.decoderIdleTimeout, metrics: metrics,
        logger: logger)
      let entry = Entry(device: device, decoder: decoder)
      entries[id] = entry
      return entry
    }
  }

  /// All entries, sorted by device id.
  var all: [Entry] {
    entries.withLock { Array($0.values) }.sorted { $0.device.id.rawValue < $1.device.id.rawValue }
  }
}
