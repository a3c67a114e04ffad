import Foundation
import Logging
import NIOPosix
import RelayCore
import Synchronization

/// Every device's recorder, and the segments on disk: one folder per device under `directory`,
/// trimmed by age and total size, oldest first.
final class Recordings: Sendable {
  struct Settings: Sendable {
    var segmentSeconds: Double = 60
    var maxAgeSeconds: Double = 86_400
    var maxBytes: Int = 10 << 30
  }

  /// A closed or open MP4 of one device.
  struct SegmentFile: Sendable {
    var path: String
    var startMs: Int64
    var bytes: Int
    var modified: Date
  }

  let directory: String
  let metrics = RecordingMetrics()
  private let settings: Settings
  private let logger: Logger
  private let recorders = Mutex<[DeviceID: Recorder]>([:])

  init(directory: String, settings: Settings, logger: Logger) {
    self.directory = directory
    self.settings = settings
    self.logger = logger
  }

  /// Starts recording the device unless it already is.
  func start(_ device: DeviceStream) {
    let recorder = recorders.withLock { recorders -> Recorder? in
      if let current = recorders[device.id], current.isRecording { return nil }
      let recorder = Recorder(
        stream: device, directory: (directory as NSString).appendingPathComponent(device.id.rawValue),
        settings: .init(segmentMs: Int64(settings.segmentSeconds * 1000)), metrics: metrics, logger: logger,
        onSegmentClosed: { [self] in enforceRetention() })
      recorders[device.id] = recorder
      return recorder
    }
    if let recorder {
      logger.info("recording started", metadata: ["device": "\(device.id)"])
      recorder.start()
    }
  }

  /// Stops the device's recording and returns once its last segment is closed.
  func stop(_ device: DeviceID) async {
    guard let recorder = recorders.withLock({ $0[device] }), recorder.isRecording else { return }
    await recorder.stop()
    logger.info("recording stopped", metadata: ["device": "\(device)"])
  }

  func stopAll() async {
    for device in recorders.withLock({ Array($0.keys) }) { await stop(device) }
  }

  func isRecording(_ device: DeviceID) -> Bool { recorders.withLock { $0[device]?.isRecording ?? false } }

  /// Why the device's last recording ended early, if it did.
  func failure(_ device: DeviceID) -> String? { recorders.withLock { $0[device]?.failure } }

  /// The device's segments, oldest first.
  func segments(of device: DeviceID) -> [SegmentFile] {
    Self.list(in: (directory as NSString).appendingPathComponent(device.rawValue))
  }

  /// Deletes the oldest closed segments while any is older than the age bound or all together exceed
  /// the size bound.
  func enforceRetention() {
    let open = Set(recorders.withLock { $0.values.compactMap(\.openSegment) })
    let devices = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
    var files = devices.flatMap { Self.list(in: (directory as NSString).appendingPathComponent($0)) }
    files.sort { $0.startMs < $1.startMs }
    var total = files.reduce(0) { $0 + $1.bytes }
    let oldestKept = Date(timeIntervalSinceNow: -settings.maxAgeSeconds)
    for file in files where !open.contains(file.path) {
      guard total > settings.maxBytes || file.modified < oldestKept else { continue }
      do {
        try FileManager.default.removeItem(atPath: file.path)
        total -= file.bytes
        logger.info("deleted recording segment (retention)", metadata: ["path": "\(file.path)"])
      } catch {
        logger.warning("cannot delete recording segment \(file.path): \(error.localizedDescription)")
      }
    }
    metrics.bytesOnDisk.store(total, ordering: .relaxed)
  }

  /// Keeps the bounds while the server runs (a segment closing also triggers it), until the task is
  /// cancelled. Listing and deleting files blocks: it runs on NIO's thread pool for blocking work.
  func runRetention(every interval: Duration = .seconds(10)) async {
    while !Task.isCancelled {
      try? await NIOThreadPool.singleton.runIfActive { self.enforceRetention() }
      try? await Task.sleep(for: interval)
    }
  }

  private static func list(in folder: String) -> [SegmentFile] {
    let names = (try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? []
    return names.compactMap { name -> SegmentFile? in
      guard let startMs = SegmentName.startMs(of: name) else { return nil }
      let path = (folder as NSString).appendingPathComponent(name)
      guard let attributes = try? FileManager.default.attributesOfItem(atPath: path) else { return nil }
      return SegmentFile(
        path: path, startMs: startMs, bytes: (attributes[.size] as? Int) ?? 0,
        modified: (attributes[.modificationDate] as? Date) ?? Date())
    }.sorted { $0.startMs < $1.startMs }
  }
}
