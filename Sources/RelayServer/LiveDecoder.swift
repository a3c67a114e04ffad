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

  var isRunning: Bool { state.withLock { $0.running } }

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
    var session = DecodeSession()
    while true {
      let stop = state.withLock { state -> Bool in
        if WallClock.monotonicNs() - state.lastDemandNs > idleNanoseconds {
          state.running = false
          return true
        }
        return false
      }
      if stop { break }
      let (packets, jumped) = device.packets(after: session.cursor, maxBacklogMs: 1000)
      if packets.isEmpty {
        device.waitForArrivals(after: session.cursor, timeout: 0.25)
        continue
      }
      if jumped {
        session.decoder = nil  // start clean at the keyframe
        metrics.recordJump()
      }
      for packet in packets {
        session.decode(packet, into: device.frames, metrics: metrics, logger: logger, device: device.id)
      }
    }
    logger.info("live decoder stopped: no consumer for \(idleTimeout)", metadata: ["device": "\(device.id)"])
  }

  private var idleNanoseconds: UInt64 {
    UInt64(idleTimeout.components.seconds) * 1_000_000_000 + UInt64(idleTimeout.components.attoseconds / 1_000_000_000)
  }
}

/// The decoder thread's own state: one FFmpeg decoder, its converter, and which packets it has seen.
private struct DecodeSession {
  var decoder: VideoDecoder?
  var codec: CodecConfiguration?
  let converter = PictureConverter()
  var cursor: UInt64 = 0
  /// Packets sent to the decoder but not yet out as pictures, by pts (decoders reorder).
  var pending: [Int64: StoredPacket] = [:]
  var lastKeyframeSequence: UInt64 = 0

  mutating func decode(
    _ packet: StoredPacket, into frames: LatestFrames, metrics: DecoderMetrics, logger: Logger, device: DeviceID
  ) {
    cursor = packet.index
    if packet.followsGap { decoder = nil }  // frames are missing before it: start clean at this keyframe
    if codec !== packet.codec || decoder == nil {
      guard packet.isKeyframe else { return }  // a decoder can only start at a keyframe
      if codec != nil && codec !== packet.codec { frames.clear() }
      let description = packet.codec.description
      do {
        decoder = try VideoDecoder(
          codecName: description.name, width: description.width, height: description.height,
          pixelFormat: description.pixelFormat, extradata: description.extradata,
          timeBase: (description.timeBase.numerator, description.timeBase.denominator))
        codec = packet.codec
        pending.removeAll()
      } catch {
        logger.error("cannot decode device \(device): \(error)")
        codec = packet.codec
        decoder = nil
        return
      }
    }
    guard let decoder else { return }
    if packet.isKeyframe { lastKeyframeSequence = packet.sequence }
    pending[packet.pts] = packet
    if pending.count > 64 { pending.removeAll() }  // a decoder that never answers must not grow this
    let started = WallClock.monotonicNs()
    let converter = self.converter
    let keyframeSequence = lastKeyframeSequence
    var outputs: [LiveFrame] = []
    var corrupt = false
    do {
      try decoder.decode(packet.data, pts: packet.pts, dts: packet.dts, isKeyframe: packet.isKeyframe) { picture in
        let source = pending.removeValue(forKey: picture.pts) ?? packet
        outputs.append(
          LiveFrame(
            packetIndex: source.index, sequence: source.sequence, keyframeSequence: keyframeSequence,
            bgr24: try converter.bgr24(picture), width: picture.width, height: picture.height,
            timestampMs: source.timestampMs, pts: picture.pts, dts: source.dts, isKeyframe: picture.isKeyframe,
            pictureType: picture.pictureType, isCorrupt: picture.isCorrupt, codec: source.codec))
      }
    } catch {
      corrupt = true
      pending[packet.pts] = nil
      logger.debug("skipped a packet that does not decode", metadata: ["device": "\(device)", "error": "\(error)"])
    }
    metrics.recordDecode(nanoseconds: WallClock.monotonicNs() - started, corrupt: corrupt)
    for frame in outputs { frames.publish(frame) }
  }
}
