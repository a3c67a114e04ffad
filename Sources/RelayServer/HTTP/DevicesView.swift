import Annotations
import Foundation
import RelayCore

/// What the web page and `/api/devices` show of each camera and of the annotation outbox, read from
/// the live parts at the moment of the request.
struct DevicesView: Sendable {
  let registry: StreamRegistry
  let cursors: ConsumerCursors
  let recordings: Recordings
  let proxies: Proxies
  let outbox: AnnotationOutbox
  let annotations: AnnotationMetrics
  let upstream: String?

  struct Device: Encodable {
    var id: String
    var state: String
    var connected: Bool
    var source: String
    var codec: String?
    var width: Int?
    var height: Int?
    var fps: Double
    var bitrateKbps: Double
    var ringSeconds: Double
    var ringBytes: Int
    var ringFrames: Int
    var framesStored: Int
    var framesLost: Int
    var sessions: Int
    /// The publisher's own ack round trip (its clock sync), ms.
    var ackRoundTripMs: Int64?
    var consumers: Int
    var recording: Bool
    var passthrough: Bool
    var passthroughConnected: Bool
    var lastError: String
  }

  struct Outbox: Encodable {
    var depth: Int
    var oldestAgeSeconds: Double?
    var upstream: String?
    var forwarded: Int
    var forwardFailures: Int
  }

  /// The devices the caller's grant covers, by id.
  func devices() -> [Device] {
    let consumers = cursors.active()
    let proxied = proxies.metrics.all
    return registry.all.filter { Access.allows(device: $0.stream.id.rawValue) }
      .sorted { $0.stream.id.rawValue < $1.stream.id.rawValue }
      .map { device($0.stream, consumers: consumers[$0.stream.id] ?? 0, proxy: proxied[$0.stream.id]) }
  }

  func device(_ id: DeviceID) -> Device? {
    guard let entry = registry.entry(id) else { return nil }
    return device(entry.stream, consumers: cursors.active()[id] ?? 0, proxy: proxies.metrics.all[id])
  }

  func outboxState() async -> Outbox {
    let oldest = try? await outbox.oldest(limit: 1).first
    return Outbox(
      depth: outbox.pendingCount, oldestAgeSeconds: oldest.map { Double(WallClock.nowMs() - $0.createdMs) / 1000 },
      upstream: upstream, forwarded: annotations.forwarded.load(ordering: .relaxed),
      forwardFailures: annotations.forwardFailures.load(ordering: .relaxed))
  }

  private func device(_ stream: DeviceStream, consumers: Int, proxy: ProxyMetrics.Figures?) -> Device {
    let status = stream.status
    let counters = stream.counters
    let ring = stream.ringUsage
    let buffer = stream.bufferSummary
    let codec = stream.codec
    let span = buffer.map { Double($0.endMs - $0.startMs) / 1000 } ?? 0
    let recentSeconds = buffer.map { Double($0.recentSpanMs) / 1000 } ?? 0
    return Device(
      id: stream.id.rawValue, state: StreamState(status).rawValue, connected: status.connected, source: status.source,
      codec: codec?.name, width: codec?.width, height: codec?.height,
      fps: recentSeconds > 0 ? Double(max(0, (buffer?.recentFrames ?? 1) - 1)) / recentSeconds : 0,
      bitrateKbps: span > 0 ? Double(ring.bytes) * 8 / 1000 / span : 0,
      ringSeconds: span, ringBytes: ring.bytes, ringFrames: ring.frames, framesStored: counters.framesStored,
      framesLost: counters.framesLost, sessions: counters.sessions, ackRoundTripMs: status.roundTripMs,
      consumers: consumers, recording: recordings.isRecording(stream.id), passthrough: proxy?.on ?? false,
      passthroughConnected: proxy?.connected ?? false,
      lastError: [recordings.failure(stream.id), status.lastError].compactMap { $0?.isEmpty == false ? $0 : nil }
        .joined(separator: "; "))
  }
}
