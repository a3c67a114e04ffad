import Foundation
import Hummingbird
import HummingbirdCore
import HummingbirdTLS
import Logging
import Media
import NIOCore
import NIOPosix
import NIOSSL
import RelayCore
import ServiceLifecycle

/// The HTTP side (`--metrics-listen`), on Hummingbird: Prometheus `/metrics`, `/healthz` (alive),
/// `/readyz` (listeners bound, outbox open), the JSON API behind the web page (`/api/devices`,
/// `/api/devices/{id}`, `/api/devices/{id}/snapshot.jpg`, `/api/outbox`) and the page at `/`. Over TLS
/// when configured; `/metrics` needs the `metrics` role and `/api/…` the `consume` role (and the
/// device) when authentication is configured; health and the page's HTML need none.
struct HTTPSide: Sendable {
  let address: HostPort
  let tls: TLSConfiguration?
  let authorization: HTTPAuthorization
  let readiness: Readiness
  let view: DevicesView
  let coldStartWait: Duration
  let renderMetrics: @Sendable () async -> String
  let logger: Logger

  /// A Service (Hummingbird's Application) serving until the graceful shutdown.
  func application(onListening: @escaping @Sendable (String) -> Void) throws -> some Service {
    let router = Router(context: HTTPContext.self)
    router.add(middleware: RoleMiddleware(authorization: authorization))
    let (readiness, view, renderMetrics, coldStartWait) = (readiness, view, renderMetrics, coldStartWait)

    router.get("/healthz") { _, _ in "ok\n" }
    router.get("/readyz") { _, _ -> Response in
      guard let missing = readiness.notReady else { return Self.text("ready\n") }
      return Self.text("not ready: \(missing)\n", status: .serviceUnavailable)
    }
    router.get("/metrics") { _, _ -> Response in
      Self.text(await renderMetrics(), contentType: "text/plain; version=0.0.4")
    }
    router.get("/") { _, _ -> Response in Self.text(WebPage.html, contentType: "text/html; charset=utf-8") }
    router.get("/api/devices") { _, _ -> Response in try Self.json(view.devices()) }
    router.get("/api/outbox") { _, _ -> Response in try Self.json(await view.outboxState()) }
    router.get("/api/devices/{id}") { _, context -> Response in
      let id = try Self.device(context)
      guard let device = view.device(id) else { return Self.notFound(id) }
      return try Self.json(device)
    }
    router.get("/api/devices/{id}/snapshot.jpg") { _, context -> Response in
      let id = try Self.device(context)
      guard let entry = view.registry.entry(id) else { return Self.notFound(id) }
      guard let frame = await entry.latestFrame(after: 0, keyframeOnly: false, wait: .zero, coldStartWait: coldStartWait)
      else { return Self.text("no picture of \(id) yet\n", status: .serviceUnavailable) }
      let jpeg = try await NIOThreadPool.singleton.runIfActive {
        try JPEGSnapshot.encode(bgr24: frame.bgr24, width: frame.width, height: frame.height)
      }
      var headers = HTTPFields()
      headers[.contentType] = "image/jpeg"
      headers[.cacheControl] = "no-store"
      return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: jpeg)))
    }

    let server: HTTPServerBuilder = try tls.map { try .tls(.http1(), tlsConfiguration: $0) } ?? .http1()
    var quiet = logger
    quiet.logLevel = max(logger.logLevel, .notice)  // not a line per request
    return Application(
      router: router, server: server,
      configuration: .init(address: .hostname(address.host, port: address.port), serverName: "relay-server"),
      onServerRunning: { channel in
        onListening(address.with(port: channel.localAddress?.port ?? address.port).description)
      },
      logger: quiet)
  }

  private static func device(_ context: HTTPContext) throws -> DeviceID {
    let raw = try context.parameters.require("id")
    guard let id = try? DeviceID(validating: raw) else {
      throw HTTPError(.badRequest, message: "\"\(raw)\" is not a device id")
    }
    guard Access.allows(device: id.rawValue) else {
      throw HTTPError(.forbidden, message: "this caller may not use device \"\(id)\"")
    }
    return id
  }

  private static func notFound(_ id: DeviceID) -> Response {
    text("device \(id) has never published to this server\n", status: .notFound)
  }

  static func text(_ body: String, status: HTTPResponse.Status = .ok, contentType: String = "text/plain; charset=utf-8") -> Response {
    var headers = HTTPFields()
    headers[.contentType] = contentType
    return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(string: body)))
  }

  private static func json(_ value: some Encodable) throws -> Response {
    let encoder = JSONEncoder()
    encoder.keyEncodingStrategy = .convertToSnakeCase
    encoder.outputFormatting = [.sortedKeys]
    var headers = HTTPFields()
    headers[.contentType] = "application/json"
    headers[.cacheControl] = "no-store"
    return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: try encoder.encode(value))))
  }
}

/// The request context: the channel, for the peer's address and its TLS certificate.
struct HTTPContext: RequestContext {
  var coreContext: CoreRequestContextStorage
  let channel: any Channel

  init(source: ApplicationRequestContextSource) {
    coreContext = .init(source: source)
    channel = source.channel
  }
}

/// The role each path needs, checked before the handler runs with the caller's grant.
struct RoleMiddleware: RouterMiddleware {
  typealias Context = HTTPContext
  let authorization: HTTPAuthorization

  func handle(
    _ request: Request, context: HTTPContext, next: (Request, HTTPContext) async throws -> Response
  ) async throws -> Response {
    let path = request.uri.path
    let role: Role? = path == "/metrics" ? .metrics : path.hasPrefix("/api/") ? .consume : nil
    guard let role else { return try await Access.$grant.withValue(.nothing) { try await next(request, context) } }
    switch await authorization.check(role, path: path, header: request.headers[.authorization], channel: context.channel) {
    case .allowed(let grant):
      return try await Access.$grant.withValue(grant) { try await next(request, context) }
    case .refused(let status, let message):
      var response = HTTPSide.text(message + "\n", status: status)
      if status == .unauthorized { response.headers[.wwwAuthenticate] = "Bearer" }
      return response
    }
  }
}

extension HostPort {
  func with(port: Int) -> HostPort { HostPort(host: host, port: port) }
}
