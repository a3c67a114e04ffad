import Annotations
import Foundation
import RelayCore

/// The server's figures in Prometheus' text format.
struct MetricsText {
  let registry: StreamRegistry
  let decoders: DecoderMetrics
  let outbox: AnnotationOutbox
  let annotations: AnnotationMetrics
  let upstreamConfigured: Bool
  let recordings: Recordings
  let proxies: Proxies
  let auth: AuthMetrics
  let insecure: Bool

  func render() -> String {
    var out = ""
    func family(_ name: String, _ type: String, _ help: String, _ samples: [(labels: String, value: String)]) {
      out += "# HELP \(name) \(help)\n# TYPE \(name) \(type)\n"
      for sample in samples { out += "\(name)\(sample.labels) \(sample.value)\n" }
    }
    let devices = registry.all.map { entry in
      (label: "{device=\"\(entry.stream.id)\"}", id: entry.stream.id, counters: entry.stream.counters,
       ring: entry.stream.ringUsage)
    }
    family("framerelay_frames_stored_total", "counter", "Frames stored in a device's ring (each acked once).",
           devices.map { ($0.label, "\($0.counters.framesStored)") })
    family("framerelay_bytes_stored_total", "counter", "Bytes of frames stored.",
           devices.map { ($0.label, "\($0.counters.bytesStored)") })
    family("framerelay_frames_lost_total", "counter", "Frames clients declared dropped (their queue bound was reached).",
           devices.map { ($0.label, "\($0.counters.framesLost)") })
    family("framerelay_sessions_total", "counter", "Publish streams begun (first connects and reconnects).",
           devices.map { ($0.label, "\($0.counters.sessions)") })
    family("framerelay_last_sequence", "gauge", "Highest sequence number stored or declared dropped in the current session.",
           devices.map { ($0.label, "\($0.counters.lastSequence)") })
    family("framerelay_ring_bytes", "gauge", "Bytes in a device's ring.", devices.map { ($0.label, "\($0.ring.bytes)") })
    family("framerelay_ring_frames", "gauge", "Frames in a device's ring.", devices.map { ($0.label, "\($0.ring.frames)") })
    family("framerelay_packets_decoded_total", "counter", "Packets the live decoders decoded.", [("", "\(decoders.packetsDecoded)")])
    family("framerelay_decode_seconds_total", "counter", "CPU time spent decoding packets and converting them to bgr24.",
           [("", String(format: "%.6f", decoders.decodeSeconds))])
    family("framerelay_packets_corrupt_total", "counter", "Packets that did not decode.", [("", "\(decoders.packetsCorrupt)")])
    family("framerelay_decoder_jumps_total", "counter", "Times a live decoder fell behind and jumped to the newest keyframe.",
           [("", "\(decoders.jumpsToLive)")])
    family("framerelay_annotations_stored_total", "counter", "Annotate calls answered OK (durable in the outbox).",
           [("", "\(annotations.stored.load(ordering: .relaxed))")])
    family("framerelay_annotations_store_failures_total", "counter", "Annotate calls refused because the outbox could not be written.",
           [("", "\(annotations.storeFailures.load(ordering: .relaxed))")])
    family("framerelay_annotations_pending", "gauge", "Annotations in the outbox, not yet confirmed upstream.",
           [("", "\(outbox.pendingCount)")])
    family("framerelay_annotations_forwarded_total", "counter", "Annotations the upstream confirmed.",
           [("", "\(annotations.forwarded.load(ordering: .relaxed))")])
    family("framerelay_annotations_forward_failures_total", "counter", "Upstream deliveries that failed (and were retried).",
           [("", "\(annotations.forwardFailures.load(ordering: .relaxed))")])
    family("framerelay_annotations_upstream_configured", "gauge", "1 when --annotations-upstream is set, 0 when annotations only accumulate.",
           [("", upstreamConfigured ? "1" : "0")])
    family("framerelay_recording_on", "gauge", "1 while the device is being recorded (Storage start=true).",
           devices.map { ($0.label, recordings.isRecording($0.id) ? "1" : "0") })
    family("framerelay_recording_frames_total", "counter", "Frames written to recording segments.",
           devices.map { ($0.label, "\(recordings.metrics.counts($0.id).frames)") })
    family("framerelay_recording_errors_total", "counter", "Recordings stopped by a write error (a full disk, say).",
           devices.map { ($0.label, "\(recordings.metrics.counts($0.id).errors)") })
    family("framerelay_recording_bytes", "gauge", "Bytes of all recording segments on disk (at the last retention check).",
           [("", "\(recordings.metrics.bytesOnDisk.load(ordering: .relaxed))")])
    let proxyFigures = proxies.metrics.all
    let proxied = devices.map { (label: $0.label, figures: proxyFigures[$0.id] ?? ProxyMetrics.Figures()) }
    family("framerelay_proxy_on", "gauge", "1 while RTMP passthrough is on (Proxy passthrough=true).",
           proxied.map { ($0.label, $0.figures.on ? "1" : "0") })
    family("framerelay_proxy_connected", "gauge", "1 while the RTMP endpoint accepts the stream.",
           proxied.map { ($0.label, $0.figures.connected ? "1" : "0") })
    family("framerelay_proxy_packets_total", "counter", "Packets pushed to the RTMP endpoint.",
           proxied.map { ($0.label, "\($0.figures.packets)") })
    family("framerelay_proxy_reconnects_total", "counter", "Times the RTMP connection failed and was retried.",
           proxied.map { ($0.label, "\($0.figures.reconnects)") })
    let refused = auth.snapshot
    family("framerelay_auth_failures_total", "counter", "Calls refused: no or unknown credentials, or a missing role or device.",
           [("{reason=\"unauthenticated\"}", "\(refused.unauthenticated)"),
            ("{reason=\"permission_denied\"}", "\(refused.permissionDenied)")])
    family("framerelay_insecure", "gauge", "1 when a non-loopback address is served without TLS or authentication (--insecure).",
           [("", insecure ? "1" : "0")])
    family("process_resident_memory_bytes", "gauge", "Resident memory.", [("", "\(Self.residentBytes)")])
    return out
  }

  private static var residentBytes: Int {
    guard let statm = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8) else { return 0 }
    let fields = statm.split(separator: " ")
    guard fields.count > 1, let pages = Int(fields[1]) else { return 0 }
    return pages * Int(sysconf(Int32(_SC_PAGESIZE)))
  }
}
