import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import Logging
import RelayCore
import RelayProtocol
import ServiceLifecycle

/// Sends annotations to a relay-server's `Image.Annotate` (`relay-client ava --annotate-to`), one call
/// each, in order; a failed call is retried with back-off, so a server that is away for a while loses
/// nothing (up to `capacity` waiting). A Service: on shutdown it sends what waits, for up to 2 s.
public final class AnnotationSink: Service, Sendable {
  private let server: HostPort
  private let security: ClientSecurity
  private let logger: Logger
  private let capacity: Int
  private let (requests, continuation) = AsyncStream.makeStream(
    of: Chrys_Cloud_Videostreaming_V1beta1_AnnotateRequest.self, bufferingPolicy: .bufferingOldest(10_000))
  private let counts = Locked((sent: 0, dropped: 0))

  public init(server: HostPort, security: ClientSecurity = ClientSecurity(), logger: Logger, capacity: Int = 10_000) {
    self.server = server
    self.security = security
    self.logger = logger
    self.capacity = capacity
  }

  public func add(_ request: Chrys_Cloud_Videostreaming_V1beta1_AnnotateRequest) {
    if case .dropped = continuation.yield(request) {
      counts.withLock { $0.dropped += 1 }
      logger.warning("--annotate-to \(server): \(capacity) annotations already wait; dropped one")
    }
  }

  public var sent: Int { counts.value.sent }

  public func run() async throws {
    try await ClientTransport.withClient(server, security: security) { client in
      let image = Chrys_Cloud_Videostreaming_V1beta1_Image.Client(wrapping: client)
      await withGracefulShutdownHandler {
        for await request in requests { await send(request, with: image) }
      } onGracefulShutdown: { [continuation] in
        continuation.finish()  // what already waits is still sent
      }
    }
  }

  private func send(
    _ request: Chrys_Cloud_Videostreaming_V1beta1_AnnotateRequest,
    with image: Chrys_Cloud_Videostreaming_V1beta1_Image.Client<HTTP2ClientTransport.Posix>
  ) async {
    let backoff = Backoff(initialSeconds: 0.25, maximumSeconds: 5)
    for attempt in 0... {
      do {
        var options = CallOptions.defaults
        options.timeout = .seconds(5)
        _ = try await image.annotate(request, options: options)
        counts.withLock { $0.sent += 1 }
        return
      } catch {
        if Task.isCancelled { return }
        let delay = backoff.delay(attempt: attempt)
        logger.warning("--annotate-to \(server): Annotate failed (\(error)); retrying in \(String(format: "%.1f", delay))s")
        try? await Task.sleep(for: .milliseconds(Int(delay * 1000)))
      }
    }
  }
}
