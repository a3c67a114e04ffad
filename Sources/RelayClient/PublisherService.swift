import Logging
import RelayCore
import ServiceLifecycle

/// One or more publishers (a gateway's cameras) as one swift-service-lifecycle Service: each runs on
/// its own, so a camera that fails does not disturb the others; a graceful shutdown (SIGTERM, SIGINT)
/// stops every capture and lets the frames in flight be acked (bounded by the stop timeout). With
/// several cameras one status table replaces their status lines. The outcomes are kept for the caller.
public final class PublishersService: Service {
  public struct Outcome: Sendable {
    public let summary: PublishSummary
    public let error: (any Error)?
  }

  public let publishers: [Publisher]
  private let results = Locked<[Outcome?]>([])

  public init(publishers: [Publisher]) {
    self.publishers = publishers
    results.value = Array(repeating: nil, count: publishers.count)
  }

  public func run() async throws {
    await withGracefulShutdownHandler {
      await withDiscardingTaskGroup { group in
        if publishers.count > 1 {
          group.addTask { await GatewayStatus(publishers: self.publishers).run() }
        }
        await withDiscardingTaskGroup { cameras in
          for (index, publisher) in publishers.enumerated() {
            cameras.addTask {
              let outcome: Outcome
              do {
                outcome = Outcome(summary: try await publisher.run(), error: nil)
              } catch {
                outcome = Outcome(summary: publisher.summary, error: error)
              }
              self.results.withLock { $0[index] = outcome }
            }
          }
        }
        group.cancelAll()  // the status table
      }
    } onGracefulShutdown: { [publishers] in
      for publisher in publishers { publisher.stop() }
    }
  }

  /// Each publisher's summary (and the error that ended it, if one did), in order.
  public var outcomes: [Outcome] {
    let results = results.value
    return publishers.indices.map { results[$0] ?? Outcome(summary: publishers[$0].summary, error: nil) }
  }
}
