import Foundation
import Logging
import Media
import RelayCore
import Synchronization

/// Proxy passthrough for one device: its packets remuxed (no re-encode) into FLV and pushed to an RTMP
/// endpoint, from the ring's newest keyframe on. When the endpoint goes away it reconnects with
/// back-off, starting again at a keyframe, until stopped.
final class RTMPProxy: Sendable {
  let device: DeviceStream
  let url: String
  private let metrics: ProxyMetrics
  private let logger: Logger
  private let backoff = Backoff(initialSeconds: 0.5, maximumSeconds: 10)
  private let interrupt = MediaInterrupt()
  private let stopped = StopSignal()
  private let reading = Mutex<StreamSubscription.Canceller?>(nil)
  private let thread = Mutex<ThreadHandle?>(nil)

  init(device: DeviceStream, url: String, metrics: ProxyMetrics, logger: Logger) {
    self.device = device
    self.url = url
    self.metrics = metrics
    self.logger = logger
  }

  func start() {
    metrics.update(device.id) { $0.on = true }
    thread.withLock { $0 = DedicatedThread.start(name: "rtmp-\(device.id)") { [self] in run() } }
  }

  /// Stops at once (a blocked network write is interrupted) and waits for the thread to end.
  func stop() async {
    interrupt.set()
    stopped.stop()
    reading.withLock { $0 }?.cancel()
    metrics.update(device.id) { $0.on = false }
    await thread.withLock { $0 }?.joined()
  }

  var isStopped: Bool { interrupt.isSet }

  private func run() {
    var failures = 0
    while !interrupt.isSet {
      do {
        try pushOnce()
      } catch {
        guard !interrupt.isSet else { break }
        failures += 1
        metrics.connectionFailed(device.id)
        let delay = backoff.delay(attempt: failures - 1)
        logger.warning(
          "RTMP passthrough of \(device.id) to \(url): \(error); reconnecting in \(String(format: "%.1f", delay))s")
        stopped.wait(seconds: delay)
        continue
      }
    }
    metrics.update(device.id) { $0.connected = false }
  }

  /// One connection: from the newest keyframe until a write fails or the proxy is stopped.
  private func pushOnce() throws(MediaError) {
    var subscription = device.subscribe(.lossless, after: device.indexBeforeNewestKeyframe)
    reading.withLock { $0 = subscription.canceller }
    if interrupt.isSet { return }  // stopped before the canceller was in place
    var muxer: PacketMuxer?
    var timeline: MillisecondTimeline?
    var codec: CodecConfiguration?
    defer { try? muxer?.finish() }
    var transcoder = H264Transcoder()  // pictures (AVA, minimal protocol) go out as H.264
    // After a gap the subscription resumes at the ring's oldest packet, a keyframe.
    while case .packets(let received, _, _) = subscription.next() {
      for original in received { for packet in try transcoder.packets(for: original) {
        if muxer == nil || codec !== packet.codec {
          guard packet.isKeyframe else { continue }
          try? muxer?.finish()
          let description = packet.codec.description
          muxer = try PacketMuxer(
            url: url, format: "flv", codecName: description.name, width: description.width,
            height: description.height, extradata: packet.parameterSets, timeBase: (1, 1000),
            options: ["rw_timeout": "5000000"], interrupt: interrupt)
          timeline = MillisecondTimeline(startMs: packet.timestampMs)
          codec = packet.codec
          metrics.update(device.id) { $0.connected = true }
          logger.info("RTMP passthrough connected", metadata: ["device": "\(device.id)", "url": "\(url)"])
        }
        let (pts, dts) = timeline!.stamps(for: packet)
        try muxer!.write(packet.data, pts: pts, dts: dts, isKeyframe: packet.isKeyframe)
        metrics.packetSent(device.id)
      }}
    }
  }
}
