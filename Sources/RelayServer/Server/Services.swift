import Annotations
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import Logging
import RelayCore
import ServiceLifecycle

// relay-server's long-running parts as swift-service-lifecycle Services. Each runs until its graceful
// shutdown, then ends its part; the ServiceGroup in RelayServer orders them.

/// One listen address: serves until shutdown, then stops taking calls and lets running ones end
/// (streaming handlers end themselves on the same graceful shutdown).
struct GRPCListener: Service {
  let server: GRPCServer<LoopPinnedTransport<HTTP2ServerTransport.Posix>>
  let address: HostPort
  /// Where the transport's tasks run (connections, and calls until LoopPinnedTransport pins each to its
  /// loop); nil is Swift's cooperative pool.
  let handlerExecutor: EventLoopTaskExecutor?
  let onListening: @Sendable (String) -> Void

  func run() async throws {
    try await withThrowingDiscardingTaskGroup { group in
      group.addTask { try await withTaskExecutorPreference(handlerExecutor) { try await server.serve() } }
      guard let bound = try await server.listeningAddress else {
        throw RPCError(code: .unavailable, message: "relay-server could not listen on \(address)")
      }
      if let ipv4 = bound.ipv4 {
        onListening("\(ipv4.host):\(ipv4.port)")
      } else if let ipv6 = bound.ipv6 {
        onListening("[\(ipv6.host)]:\(ipv6.port)")
      }
      try? await gracefulShutdown()
      server.beginGracefulShutdown()
    }
  }
}

/// Opens the outbox at start (so a problem is reported at once) and closes it last.
struct AnnotationOutboxService: Service {
  let outbox: AnnotationOutbox
  let readiness: Readiness
  let logger: Logger

  func run() async throws {
    do {
      try await outbox.open()
      readiness.outboxOpened()
    } catch {
      logger.error("annotations outbox unavailable, Annotate will fail until this is fixed: \(error)")
    }
    try? await gracefulShutdown()
    readiness.outboxClosed()
    await outbox.close()
  }
}

struct ForwarderService: Service {
  let forwarder: AnnotationForwarder

  func run() async throws {
    try? await cancelWhenGracefulShutdown { try await forwarder.run() }
  }
}

/// Retention while running; on shutdown every recording writes what is stored and closes its segment.
struct RecordingsService: Service {
  let recordings: Recordings

  func run() async throws {
    await cancelWhenGracefulShutdown { await recordings.runRetention() }
    await recordings.stopAll()
  }
}

struct ProxiesService: Service {
  let proxies: Proxies

  func run() async throws {
    try? await gracefulShutdown()
    await proxies.stopAll()
  }
}

/// Live decoders start on demand; on shutdown each one's thread is stopped and joined.
struct LiveDecodersService: Service {
  let registry: StreamRegistry

  func run() async throws {
    try? await gracefulShutdown()
    await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
      DispatchQueue.global().async {
        registry.stopDecoders()
        done.resume()
      }
    }
  }
}

/// Every `interval`, freed heap memory goes back to the system (MemoryAllocator.returnFreedMemory), so
/// RSS follows what is in use rather than the worst burst so far. A glibc trim walks malloc's free lists:
/// a few milliseconds for hundreds of MiB, on a thread of the cooperative pool (under jemalloc, a purge of
/// the dirty pages its decay has not yet returned). Every 2 s because each
/// camera's ring frees a whole GOP at once (~1 MB at 4 Mbit/s): 100 cameras held 33 MiB less than with
/// 10 s, at no CPU cost the camera benchmark could tell apart from noise.
struct MemoryTrimmer: Service {
  var interval: Duration = .seconds(2)

  func run() async throws {
    try? await cancelWhenGracefulShutdown {
      while true {
        try await Task.sleep(for: interval)
        MemoryAllocator.returnFreedMemory()
      }
    }
  }
}

/// A non-loopback address served without TLS or authentication (--insecure): said at start and every hour.
struct InsecureWarning: Service {
  let logger: Logger

  func run() async throws {
    try? await cancelWhenGracefulShutdown {
      while true {
        logger.warning(
          "insecure: a non-loopback address is served without TLS or without authentication (--insecure); anyone who reaches it can publish, read every camera and switch recording and passthrough. Configure --tls-cert/--tls-key and --tokens, --jwt-public-key or --tls-client-ca")
        try await Task.sleep(for: .seconds(3600))
      }
    }
  }
}
