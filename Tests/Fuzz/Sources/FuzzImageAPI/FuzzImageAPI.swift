// The Chrysalis Image API (chrys.cloud.videostreaming.v1beta1.Image): an input is
//   byte 0: the method (VideoLatestImage, VideoBufferedImage, VideoProbe, ListStreams, SystemTime,
//           Annotate, Proxy, Storage),
//   byte 1: the caller's grant (everything; consume on cam1 only; annotate + control; nothing),
//   byte 2: bit 0 names the consumer (x-consumer-id) on VideoLatestImage; bit 1: the first two
//           pieces below are a publisher's hello codec (framerelay.v1.CodecDescription, checked as
//           the native ingest checks it) and a packet, which cam3 gets before the call,
//   then the request message (VideoLatestImage: several), pieces split by Fuzz.messageSeparator,
// handed to the server's own ImageService with the grant set, as the auth interceptor would.
//
// One server per process: cam1 holds six 8x8 gray raw frames 40 ms apart (so replays and the live
// decoder really decode), cam2 has published an H.264 hello and no frames, cam3 is whatever the inputs
// published (so what a publisher claims about its stream reaches the API); the data directory (the
// annotations outbox, recordings) is under /dev/shm. Annotate uses one fixed x-annotation-id, so the
// outbox keeps one row however many annotations the fuzzer sends.
import Annotations
import Foundation
import CFuzzDriver
import FuzzSupport
import GRPCCore
import RelayCore
import RelayProtocol

@testable import RelayServer

typealias Requests = Chrys_Cloud_Videostreaming_V1beta1_VideoFrameRequest

private let firstFrameMs: Int64 = 1_700_000_000_000
private let frameCount = 6

private struct Fixture: Sendable {
  let service: ImageService
  let registry: StreamRegistry

  init() throws {
    var configuration = ServerConfiguration()
    configuration.dataDirectory = "/dev/shm/framerelay-fuzz-image-\(getpid())"
    try FileManager.default.createDirectory(atPath: configuration.dataDirectory, withIntermediateDirectories: true)
    configuration.latestFrameWait = .zero
    configuration.coldStartWait = .zero
    configuration.decoderIdleTimeout = .seconds(2)
    configuration.maxReplays = 2
    configuration.maxDevices = 4
    configuration.ringMaxBytes = 1 << 20
    let logger = Fuzz.logger
    let metrics = DecoderMetrics()
    registry = StreamRegistry(configuration: configuration, metrics: metrics, logger: logger)
    let cam1 = try registry.entryCreatingIfNeeded(DeviceID(validating: "cam1")).stream
    cam1.publisherConnected(
      codec: CodecDescription(name: "rawvideo", width: 8, height: 8, pixelFormat: "gray", timeBase: Rational(1, 1000)),
      status: .init())
    for index in 0..<frameCount {
      let ms = firstFrameMs + Int64(index) * 40
      cam1.append(
        .init(
          sequence: UInt64(index + 1), data: Data(repeating: UInt8(index * 40), count: 64), pts: ms, dts: ms,
          isKeyframe: true, timestampMs: ms))
    }
    _ = try registry.entryCreatingIfNeeded(DeviceID(validating: "cam3"))
    let cam2 = try registry.entryCreatingIfNeeded(DeviceID(validating: "cam2")).stream
    cam2.publisherConnected(
      codec: CodecDescription(name: "h264", width: 64, height: 48, pixelFormat: "yuv420p", timeBase: Rational(1, 90_000)),
      status: .init())
    let outbox = AnnotationOutbox(directory: configuration.dataDirectory, logger: logger)
    service = ImageService(
      registry: registry, cursors: ConsumerCursors(capacity: 64), replays: ReplayLimiter(limit: configuration.maxReplays),
      metrics: metrics, outbox: outbox, annotationMetrics: AnnotationMetrics(),
      recordings: Recordings(
        directory: (configuration.dataDirectory as NSString).appendingPathComponent("recordings"),
        settings: .init(segmentSeconds: 1, maxAgeSeconds: 60, maxBytes: 1 << 20), logger: logger),
      proxies: Proxies(endpoints: [:], logger: logger), configuration: configuration, logger: logger)
  }
}

private let fixture: Fixture = {
  do { return try Fixture() } catch { fatalError("fixture: \(error)") }
}()

private let grants: [Grant] = [
  .everything,
  Grant(identity: "consumer", roles: [.consume], devices: [DevicePattern("cam1")]),
  Grant(identity: "operator", roles: [.annotate, .control]),
  .nothing,
]

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ start: UnsafeRawPointer?, _ count: Int) -> CInt {
  var reader = ByteReader(Fuzz.data(start, count))
  let method = reader.byte() % 8
  let grant = grants[Int(reader.byte()) % grants.count]
  let flags = reader.byte()
  var pieces = Fuzz.split(reader.rest(), on: Fuzz.messageSeparator)
  let fixture = fixture
  if flags & 2 != 0, pieces.count >= 2 {
    publish(codec: pieces[0], packet: pieces[1], fixture)
    pieces.removeFirst(2)
  }
  let named = flags & 1 == 1
  let requests = pieces  // a constant for the concurrently running call
  Fuzz.block {
    do {
      try await Access.$grant.withValue(grant) { try await call(method, requests, named: named, fixture) }
    } catch {
      // A refusal is an answer; only crashes, hangs and broken invariants are findings.
    }
  }
  return 0
}

private func context(_ method: String) -> ServerContext {
  Fuzz.context(service: "chrys.cloud.videostreaming.v1beta1.Image", method: method)
}

/// A publisher's hello for cam3 (as NativeIngestService.begin takes it) and one packet of it.
private func publish(codec: Data, packet: Data, _ fixture: Fixture) {
  guard let proto = try? Framerelay_V1_CodecDescription(serializedBytes: codec),
    let description = try? CodecDescription(validating: proto),
    let cam3 = fixture.registry.entry(try! DeviceID(validating: "cam3"))?.stream
  else { return }
  cam3.publisherConnected(codec: description, status: .init())
  let now = WallClock.nowMs()
  let sequence = cam3.counters.lastSequence + 1
  cam3.append(.init(sequence: sequence, data: packet, pts: now, dts: now, isKeyframe: true, timestampMs: now))
}

private func call(_ method: UInt8, _ pieces: [Data], named: Bool, _ fixture: Fixture) async throws {
  let service = fixture.service
  let body = pieces.first ?? Data()
  switch method {
  case 0:
    let metadata: Metadata = named ? [ConsumerCursors.consumerIDKey: "fuzz"] : [:]
    let answers = Collector<VideoFrame>()
    let response = try await service.videoLatestImage(
      request: StreamingServerRequest(metadata: metadata, messages: Fuzz.requests(pieces, as: Requests.self)),
      context: context("VideoLatestImage"))
    if case .success(let contents) = response.accepted { _ = try await contents.producer(answers.writer) }
    for frame in answers.written where frame.deviceID == "cam1" { checkFrame(frame) }
  case 1:
    let request = try Chrys_Cloud_Videostreaming_V1beta1_VideoFrameBufferedRequest(serializedBytes: body)
    let answers = Collector<VideoFrame>()
    try await service.videoBufferedImage(request: request, response: answers.writer, context: context("VideoBufferedImage"))
    let toMs = request.timestampTo == 0 ? Int64.max : request.timestampTo
    for frame in answers.written {
      if frame.deviceID == "cam1" { checkFrame(frame) }
      Fuzz.require(
        frame.timestamp >= request.timestampFrom && frame.timestamp <= toMs,
        "replayed frame at \(frame.timestamp) is outside \(request.timestampFrom)...\(toMs)")
    }
  case 2:
    let request = try Chrys_Cloud_Videostreaming_V1beta1_VideoProbeRequest(serializedBytes: body)
    let probe = try await service.videoProbe(request: request, context: context("VideoProbe"))
    if request.deviceID == "cam1" {
      Fuzz.require(probe.buffer.frames == Int64(frameCount) && probe.videoCodec.width == 8, "cam1 probe: \(probe)")
    }
  case 3:
    let request = try Chrys_Cloud_Videostreaming_V1beta1_ListStreamRequest(serializedBytes: body)
    let answers = Collector<Chrys_Cloud_Videostreaming_V1beta1_ListStream>()
    try await service.listStreams(request: request, response: answers.writer, context: context("ListStreams"))
    for stream in answers.written {
      Fuzz.require(Access.allows(device: stream.name), "ListStreams showed \(stream.name) to a caller without rights on it")
    }
  case 4:
    let request = try Chrys_Cloud_Videostreaming_V1beta1_SystemTimeRequest(serializedBytes: body)
    _ = try await service.systemTime(request: request, context: context("SystemTime"))
  case 5:
    let request = try AnnotateRequest(serializedBytes: body)
    _ = try await service.annotate(
      request: ServerRequest(metadata: [GRPCUpstream.idMetadataKey: "fuzz"], message: request), context: context("Annotate"))
  case 6:
    let request = try Chrys_Cloud_Videostreaming_V1beta1_ProxyRequest(serializedBytes: body)
    _ = try await service.proxy(request: request, context: context("Proxy"))
  default:
    let request = try Chrys_Cloud_Videostreaming_V1beta1_StorageRequest(serializedBytes: body)
    _ = try await service.storage(request: request, context: context("Storage"))
  }
}

/// A frame of cam1: 8x8 bgr24, a timestamp of one of its packets.
private func checkFrame(_ frame: VideoFrame) {
  Fuzz.require(frame.width == 8 && frame.height == 8 && frame.data.count == 8 * 8 * 3, "frame shape \(frame.width)x\(frame.height), \(frame.data.count) bytes")
  Fuzz.require(
    frame.timestamp >= firstFrameMs && frame.timestamp <= firstFrameMs + Int64(frameCount - 1) * 40 && (frame.timestamp - firstFrameMs) % 40 == 0,
    "frame timestamp \(frame.timestamp)")
}

@_cdecl("FuzzImageAPI_main")
public func main(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>) -> CInt {
  framerelay_fuzz_driver(argc, argv)
}
