import Foundation
import Logging
import Media
import RelayCore
import Synchronization

/// Decodes a device's packets to bgr24 on a thread of its own, only while someone consumes the device:
/// started by the first request, stopped after `idleTimeout` without one.
final class LiveDecoder: Sendable {
  private struct State {
    var running = false
    var lastDemandNs: UInt64 = 0
  }

  private let device: Device
  private let idleTimeout: Duration
  private let metrics: DecoderMetrics
  private let logger: Logger
  private let state = Mutex(State())

  init(device: Device, idleTimeout: Duration, metrics: DecoderMetrics, logger: Logger) {
    self.device = device
    self.idleTimeout = idleTimeout
    self.metrics = metrics
    self.logger = logger
  }

  /// A consumer wants frames: keep decoding, and start if not running.
  func demand() {
    let start = state.withLock { state -> Bool in
      state.lastDemandNs = WallClock.monotonicNs()
      guard !state.running else { return false }
      state.running = true
      return true
    }
    if start {
      logger.info("live decoder started", metadata: ["device": "\(device.id)"])
      DedicatedThread.start(name: "decode-\(device.id)") { [self] in run() }
    }
  }

  private func run() {
    var decoder = PacketDecoder(device: device.id, metrics: metrics, logger: logger)
    var cursor: UInt64 = 0
    while true {
      let stop = state.withLock { state -> Bool in
        if WallClock.monotonicNs() - state.lastDemandNs > idleNanoseconds {
          state.running = false
          return true
        }
        return false
      }
      if stop { break }
      let (packets, jumped) = device.packets(after: cursor, maxBacklogMs: 1000)
      if packets.isEmpty {
        device.waitForArrivals(after: cursor, timeout: 0.25)
        continue
      }
      if jumped {
        decoder.restart()  // start clean at the keyframe
        metrics.recordJump()
      }
      for packet in packets {
        cursor = packet.index
        if decoder.willReopen(for: packet.codec) { device.frames.clear() }  // no stale size or codec
        for frame in decoder.decode(packet) { device.frames.publish(frame) }
      }
    }
    logger.info("live decoder stopped: no consumer for \(idleTimeout)", metadata: ["device": "\(device.id)"])
  }

  private var idleNanoseconds: UInt64 {
    UInt64(idleTimeout.components.seconds) * 1_000_000_000 + UInt64(idleTimeout.components.attoseconds / 1_000_000_000)
  }
}
