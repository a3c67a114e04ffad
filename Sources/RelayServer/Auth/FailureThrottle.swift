import RelayCore

/// Slows refused callers down, per peer address: the n-th refusal within a minute waits
/// `base × 2^(n-1)`, at most `maximum`, before its answer. Each peer is logged at most once a minute.
/// A value type: the interceptor keeps it behind a lock and sleeps outside it.
struct FailureThrottle {
  struct Decision: Equatable {
    let delayMs: Int
    /// Log this refusal (the first from this peer in a minute), with the count since the last log.
    let log: Bool
    let refusalsSinceLog: Int
  }

  var baseMs = 20
  var maximumMs = 2000
  var forgetAfterNs: Int64 = 60_000_000_000
  /// Peers remembered; the one refused longest ago is forgotten first.
  var capacity = 10_000

  private struct Peer {
    var refusals: Int
    var lastRefusalNs: Int64
    var lastLogNs: Int64?
    var sinceLog: Int
  }

  private var peers: [String: Peer] = [:]

  mutating func refused(peer: String, nowNs: Int64) -> Decision {
    var entry = peers[peer] ?? Peer(refusals: 0, lastRefusalNs: nowNs, lastLogNs: nil, sinceLog: 0)
    if nowNs - entry.lastRefusalNs > forgetAfterNs { entry.refusals = 0 }
    entry.refusals += 1
    entry.sinceLog += 1
    entry.lastRefusalNs = nowNs
    let log = entry.lastLogNs.map { nowNs - $0 >= 60_000_000_000 } ?? true
    let count = entry.sinceLog
    if log {
      entry.lastLogNs = nowNs
      entry.sinceLog = 0
    }
    if peers[peer] == nil && peers.count >= capacity { forgetOldest() }
    peers[peer] = entry
    let shift = min(entry.refusals - 1, 30)
    return Decision(delayMs: min(baseMs << shift, maximumMs), log: log, refusalsSinceLog: count)
  }

  private mutating func forgetOldest() {
    if let oldest = peers.min(by: { $0.value.lastRefusalNs < $1.value.lastRefusalNs })?.key {
      peers[oldest] = nil
    }
  }

  /// "ipv4:127.0.0.1:51234" → "ipv4:127.0.0.1": refusals count per address, whatever the port.
  static func address(ofPeer peer: String) -> String {
    guard let colon = peer.lastIndex(of: ":"), peer.hasPrefix("ipv4:") || peer.hasPrefix("ipv6:") else { return peer }
    return String(peer[..<colon])
  }
}
