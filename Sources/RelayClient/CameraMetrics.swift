import Metrics
import RelayCore

/// One camera's figures through swift-metrics, for `relay-client --metrics-listen`: frames sent, acked
/// and resent, frames and whole GOPs the queue bound dropped, reconnects, and the ack round trip.
/// The queued bytes are a gauge read at each scrape (`PublishersService.recordGauges`).
struct CameraMetrics: Sendable {
  let sent: Counter
  let acked: Counter
  let resent: Counter
  let droppedFrames: Counter
  let droppedGOPs: Counter
  let reconnects: Counter
  let ackRoundTrip: Metrics.Timer

  init(device: DeviceID) {
    let camera = [("device", device.rawValue)]
    sent = Counter(label: "framerelay_client_frames_sent_total", dimensions: camera)
    acked = Counter(label: "framerelay_client_frames_acked_total", dimensions: camera)
    resent = Counter(label: "framerelay_client_frames_resent_total", dimensions: camera)
    droppedFrames = Counter(label: "framerelay_client_frames_dropped_total", dimensions: camera)
    droppedGOPs = Counter(label: "framerelay_client_gops_dropped_total", dimensions: camera)
    reconnects = Counter(label: "framerelay_client_reconnects_total", dimensions: camera)
    ackRoundTrip = Metrics.Timer(label: "framerelay_client_ack_round_trip_seconds", dimensions: camera)
  }
}
