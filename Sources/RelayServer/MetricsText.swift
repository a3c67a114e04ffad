import Foundation

/// The server's figures in Prometheus' text format.
struct MetricsText {
  let registry: DeviceRegistry
  let decoders: DecoderMetrics

  func render() -> String {
    var out = ""
    func family(_ name: String, _ type: String, _ help: String, _ samples: [(labels: String, value: String)]) {
      out += "# HELP \(name) \(help)\n# TYPE \(name) \(type)\n"
      for sample in samples { out += "\(name)\(sample.labels) \(sample.value)\n" }
    }
    let devices = registry.all.map { entry in
      (label: "{device=\"\(entry.device.id)\"}", counters: entry.device.counters, ring: entry.device.ringUsage)
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
