import Annotations
import Foundation
import Metrics
import Prometheus
import RelayCore

/// `/metrics`: swift-metrics' figures as swift-prometheus writes them. Counters and histograms are
/// counted where things happen; what is a state rather than an event (ring sizes, consumers, the
/// outbox, recording and passthrough, memory) is read into gauges at each scrape.
struct MetricsScrape: Sendable {
  let prometheus: PrometheusCollectorRegistry
  let registry: StreamRegistry
  let cursors: ConsumerCursors
  let outbox: AnnotationOutbox
  let upstreamConfigured: Bool
  let recordings: Recordings
  let proxies: Proxies
  let insecure: Bool

  func render() async -> String {
    let consumers = cursors.active()
    let proxied = proxies.metrics.all
    for entry in registry.all {
      let stream = entry.stream
      let device = [("device", stream.id.rawValue)]
      let ring = stream.ringUsage
      Gauge(label: "framerelay_ring_bytes", dimensions: device).record(ring.bytes)
      Gauge(label: "framerelay_ring_frames", dimensions: device).record(ring.frames)
      Gauge(label: "framerelay_last_sequence", dimensions: device).record(Int(clamping: stream.counters.lastSequence))
      Gauge(label: "framerelay_consumers", dimensions: device).record(consumers[stream.id] ?? 0)
      Gauge(label: "framerelay_recording_on", dimensions: device).record(recordings.isRecording(stream.id) ? 1 : 0)
      let proxy = proxied[stream.id]
      Gauge(label: "framerelay_proxy_on", dimensions: device).record(proxy?.on == true ? 1 : 0)
      Gauge(label: "framerelay_proxy_connected", dimensions: device).record(proxy?.connected == true ? 1 : 0)
    }
    Gauge(label: "framerelay_annotations_pending").record(outbox.pendingCount)
    let oldest = try? await outbox.oldest(limit: 1).first
    Gauge(label: "framerelay_annotations_oldest_age_seconds")
      .record(oldest.map { Double(WallClock.nowMs() - $0.createdMs) / 1000 } ?? 0)
    Gauge(label: "framerelay_annotations_upstream_configured").record(upstreamConfigured ? 1 : 0)
    Gauge(label: "framerelay_recording_bytes").record(recordings.metrics.bytesOnDisk.load(ordering: .relaxed))
    Gauge(label: "framerelay_insecure").record(insecure ? 1 : 0)
    Gauge(label: "process_resident_memory_bytes").record(Self.residentBytes)
    return prometheus.emitToString()
  }

  private static var residentBytes: Int {
    guard let statm = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8) else { return 0 }
    let fields = statm.split(separator: " ")
    guard fields.count > 1, let pages = Int(fields[1]) else { return 0 }
    return pages * Int(sysconf(Int32(_SC_PAGESIZE)))
  }
}
