import Prometheus

extension RelayServer {
  /// The swift-metrics backend relay-server bootstraps: Prometheus into `registry`, with buckets fine
  /// enough (a fraction of a frame interval) for the live-latency histograms to give a useful p99.
  public static func metricsFactory(registry: PrometheusCollectorRegistry) -> PrometheusMetricsFactory {
    var factory = PrometheusMetricsFactory(registry: registry)
    let milliseconds: [Int] = [1, 2, 3, 4, 5, 6, 7, 8, 10, 12, 15, 20, 25, 30, 40, 50, 75, 100, 150, 250, 500, 1000, 2500]
    let buckets = milliseconds.map { Duration.milliseconds($0) }
    for label in [ImageService.frameAgeLabel, DecoderMetrics.decodeLagLabel] {
      factory.durationHistogramBuckets[label] = buckets
    }
    return factory
  }
}
