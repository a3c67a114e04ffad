import Logging
import RelayCore
import ServiceLifecycle

/// A publisher as a swift-service-lifecycle Service: a graceful shutdown (SIGTERM, SIGINT) stops the
/// capture and lets the frames in flight be acked (bounded by the stop timeout) before it returns.
/// The outcome is kept for the caller: the summary, or the error that ended the run.
public final class PublisherService: Service {
  public let publisher: Publisher
  private let outcome = Locked<Result<PublishSummary, any Error>?>(nil)

  public init(publisher: Publisher) { self.publisher = publisher }

  public func run() async throws {
    let result: Result<PublishSummary, any Error>
    do {
      result = .success(
        try await withGracefulShutdownHandler {
          try await publisher.run()
        } onGracefulShutdown: { [publisher] in
          publisher.stop()
        })
    } catch {
      result = .failure(error)
    }
    outcome.value = result
  }

  /// Set once `run` returned.
  public var result: Result<PublishSummary, any Error>? { outcome.value }
}
