import NIOCore
import NIOPosix
import RelayCore

/// Tells when a server that could not be reached answers again: a plain TCP connect, closed at once.
/// While reconnecting, a partition that drops packets leaves a new connection hanging for seconds
/// after the network is back; a probe that fails and then succeeds means the network healed, so the
/// publisher reconnects at once instead of waiting out its back-off or the hanging connect. A server
/// that answered all along (it refuses the stream for another reason) keeps the normal back-off.
struct ServerProbe {
  let server: HostPort
  /// Between probes; each waits at most this long for the connect.
  var interval: Duration = .milliseconds(250)

  /// Returns once a probe succeeds after `failures` failed in a row; never when the server answers all
  /// along. `afterFailure`: the caller saw the server unreachable itself (its connect failed or hung),
  /// so the first probe that answers already means the network healed.
  func waitForHeal(afterFailure: Bool = false, failures needed: Int = 1) async throws {
    var sawFailure = afterFailure
    var failedInARow = 0
    while true {
      let answered = await answers()
      if answered && sawFailure { return }
      failedInARow = answered ? 0 : failedInARow + 1
      if failedInARow >= needed { sawFailure = true }
      try await Task.sleep(for: interval)
    }
  }

  private func answers() async -> Bool {
    do {
      let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
        .connectTimeout(.milliseconds(Int64(interval / .milliseconds(1))))
        .connect(host: server.host, port: server.port).get()
      try? await channel.close()
      return true
    } catch {
      return false
    }
  }
}

/// A probe running in the background until cancelled; `healed` once the server answered after
/// failing (see `waitForHeal`).
final class HealWatch: Sendable {
  private let flag = Locked(false)
  private let task: Task<Void, Never>

  init(_ probe: ServerProbe, failures: Int = 1) {
    task = Task { [flag] in
      do {
        try await probe.waitForHeal(failures: failures)
        flag.value = true
      } catch {}  // cancelled
    }
  }

  var healed: Bool { flag.value }

  func cancel() { task.cancel() }
}
