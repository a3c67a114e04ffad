import GRPCCore

/// The watchdog gave up on an attempt: no answer to its opening, or no acks with frames in flight.
struct StreamStalled: Error, CustomStringConvertible {
  let description: String
}

/// The network healed while the attempt's own connection still hangs: reconnect at once.
struct ConnectionHung: Error, CustomStringConvertible {
  var description: String { "the network is back but this connection hung; reconnecting at once" }
}

enum AttemptFailure {
  /// The attempt failed because the server could not be reached (its connect failed, or it hung with
  /// no answer or no acks), not because the server answered and refused: a probe that answers then ends
  /// the back-off at once, since the network (or the server) is back. The heal may come just before the
  /// back-off starts, so the back-off's own probe would never see a failure.
  static func isUnreachable(_ error: any Error) -> Bool {
    if error is StreamStalled || error is ConnectionHung { return true }
    guard let rpc = error as? RPCError, rpc.code == .unavailable else { return false }
    return rpc.message.hasPrefix("Could not establish a connection")
  }
}
