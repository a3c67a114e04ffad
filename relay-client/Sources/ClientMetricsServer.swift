import Foundation
import Hummingbird
import Logging
import Metrics
import NIOCore
import Prometheus
import RelayClient
import RelayCore
import ServiceLifecycle

/// `relay-client --metrics-listen`: every camera's swift-metrics figures (CameraMetrics) as Prometheus
/// text at GET /metrics, the queued bytes read at each scrape, and GET /healthz.
struct ClientMetricsServer {
  /// The registry behind the swift-metrics backend (bootstrapped once, with the logger).
  static let registry = PrometheusCollectorRegistry()

  let address: HostPort
  let publishers: [Publisher]

  func application() throws -> some Service {
    let router = Router()
    let publishers = self.publishers
    router.get("/healthz") { _, _ in "ok\n" }
    router.get("/metrics") { _, _ -> Response in
      for publisher in publishers {
        Gauge(label: "framerelay_client_queued_bytes", dimensions: [("device", publisher.configuration.device.rawValue)])
          .record(publisher.queuedBytes)
      }
      var headers = HTTPFields()
      headers[.contentType] = "text/plain; version=0.0.4"
      return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(string: Self.registry.emitToString())))
    }
    var logger = Logger(label: "relay-client-metrics")
    logger.logLevel = .notice
    let address = self.address
    return Application(
      router: router, configuration: .init(address: .hostname(address.host, port: address.port), serverName: "relay-client"),
      onServerRunning: { channel in
        // Unbuffered: scripts and tests wait for this line.
        FileHandle.standardOutput.write(
          Data("relay-client metrics on \(address.host):\(channel.localAddress?.port ?? address.port)\n".utf8))
      },
      logger: logger)
  }
}
