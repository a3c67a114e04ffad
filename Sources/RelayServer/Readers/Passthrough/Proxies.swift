import Logging
import RelayCore
import Synchronization

/// The RTMP endpoints the configuration gives (`--rtmp-endpoint DEVICE=URL`, `*` for every device,
/// `{device}` replaced by the id) and the passthroughs running now.
final class Proxies: Sendable {
  let metrics = ProxyMetrics()
  private let endpoints: [String: String]
  private let logger: Logger
  private let running = Mutex<[DeviceID: RTMPProxy]>([:])

  init(endpoints: [String: String], logger: Logger) {
    self.endpoints = endpoints
    self.logger = logger
  }

  func endpoint(for device: DeviceID) -> String? {
    (endpoints[device.rawValue] ?? endpoints["*"])?.replacingOccurrences(of: "{device}", with: device.rawValue)
  }

  /// Starts the passthrough unless it runs already. The endpoint must exist (see `endpoint(for:)`).
  func start(_ device: DeviceStream, url: String) {
    let proxy = running.withLock { running -> RTMPProxy? in
      if let current = running[device.id], !current.isStopped { return nil }
      let proxy = RTMPProxy(device: device, url: url, metrics: metrics, logger: logger)
      running[device.id] = proxy
      return proxy
    }
    if let proxy {
      logger.info("RTMP passthrough on", metadata: ["device": "\(device.id)", "url": "\(url)"])
      proxy.start()
    }
  }

  /// Stops the passthrough and returns once its thread has ended.
  func stop(_ device: DeviceID) async {
    guard let proxy = running.withLock({ $0.removeValue(forKey: device) }) else { return }
    await proxy.stop()
    logger.info("RTMP passthrough off", metadata: ["device": "\(device)"])
  }

  func stopAll() async {
    for device in running.withLock({ Array($0.keys) }) { await stop(device) }
  }
}
