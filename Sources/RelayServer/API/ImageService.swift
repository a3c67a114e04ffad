import Annotations
import Foundation
import GRPCCore
import Logging
import Metrics
import Media
import RelayCore
import RelayProtocol
import ServiceLifecycle

typealias VideoFrame = Chrys_Cloud_Videostreaming_V1beta1_VideoFrame

/// The Chrysalis `Image` API, so existing analytics consumers run unchanged.
/// Every timestamp is milliseconds since the Unix epoch on this server's clock.
struct ImageService: Chrys_Cloud_Videostreaming_V1beta1_Image.SimpleServiceProtocol {
  let registry: StreamRegistry
  let cursors: ConsumerCursors
  let replays: ReplayLimiter
  let metrics: DecoderMetrics
  let outbox: AnnotationOutbox
  let annotationMetrics: AnnotationMetrics
  let recordings: Recordings
  let proxies: Proxies
  let configuration: ServerConfiguration
  let logger: Logger
  /// VideoLatestImage answers in the making per connection (8: more than a consumer's threads need at
  /// 30 fps), so a crowd on one connection cannot starve the others.
  var connectionShare = ConnectionShare(permits: 8)
  /// The last picture of each device, serialized once for all its VideoLatestImage consumers.
  var serializedFrames = SerializedFrames()
  /// VideoLatestImage: how long a request waited for a frame, and how long until its answer was written.
  private let consumerWait = Metrics.Timer(label: "framerelay_consumer_wait_seconds")
  private let consumerResponse = Metrics.Timer(label: "framerelay_consumer_response_seconds")
  private let frameAge = Metrics.Timer(label: ImageService.frameAgeLabel)

  /// A picture's packet stored -> its answer handed to the transport (the server's share of a live
  /// consumer's latency).
  static let frameAgeLabel = "framerelay_consumer_frame_age_seconds"

  /// Required by SimpleServiceProtocol; `ImageAPI` registers `latestImagesSerialized` in its place.
  func videoLatestImage(
    request: RPCAsyncSequence<Chrys_Cloud_Videostreaming_V1beta1_VideoFrameRequest, any Error>,
    response: RPCWriter<VideoFrame>,
    context: ServerContext
  ) async throws {
    try await latestImages(request, consumer: context.remotePeer, connection: context.remotePeer) { frame, device in
      try await response.write(frame.map { VideoFrame($0, device: device) } ?? VideoFrame())
    }
  }

  /// VideoLatestImage as gRPC calls it (see `ImageAPI`). Declared bidirectional; answers exactly one
  /// VideoFrame per request, so unary-style callers (one request, one answer) and streaming callers
  /// (many requests) are both served. A consumer is its `x-consumer-id` metadata when it names itself
  /// (threads sharing one channel), else its connection. Each picture is serialized once for all the
  /// consumers it goes to (`SerializedFrames`).
  func latestImagesSerialized(
    request: StreamingServerRequest<Chrys_Cloud_Videostreaming_V1beta1_VideoFrameRequest>,
    context: ServerContext
  ) async throws -> StreamingServerResponse<SerializedVideoFrame> {
    let named = request.metadata[stringValues: ConsumerCursors.consumerIDKey].first(where: { !$0.isEmpty })
    let consumer = named.map { "id:\($0)" } ?? context.remotePeer
    return StreamingServerResponse { writer in
      try await latestImages(request.messages, consumer: consumer, connection: context.remotePeer) { frame, device in
        try await writer.write(frame.map { serializedFrames.serialized($0, device: device) } ?? SerializedVideoFrame())
      }
      return [:]
    }
  }

  /// Answers each request with `send(frame, device)`; a nil frame is "no new frame yet" (empty, OK).
  private func latestImages(
    _ request: RPCAsyncSequence<Chrys_Cloud_Videostreaming_V1beta1_VideoFrameRequest, any Error>,
    consumer: String, connection: String, send: @escaping @Sendable (LiveFrame?, DeviceID) async throws -> Void
  ) async throws {
    do {
      try await cancelWhenGracefulShutdown {
        for try await frameRequest in request {
          let arrived = WallClock.monotonicNs()
          defer { consumerResponse.recordNanoseconds(Int64(WallClock.monotonicNs() - arrived)) }
          let entry = try knownDevice(frameRequest.deviceID)
          try await connectionShare.withPermit(for: connection) {
            let key = ConsumerCursors.Key(
              peer: consumer, device: entry.stream.id, keyframeOnly: frameRequest.keyFrameOnly)
            let frame = await latestFrame(of: entry, after: cursors.cursor(for: key), keyframeOnly: frameRequest.keyFrameOnly)
            consumerWait.recordNanoseconds(Int64(WallClock.monotonicNs() - arrived))
            if let frame { cursors.advance(key, to: frame.packetIndex) }
            try await send(frame, entry.stream.id)
            if let frame, frame.storedNs > 0 {
              frameAge.recordNanoseconds(Int64(truncatingIfNeeded: WallClock.monotonicNs() &- frame.storedNs))
            }
          }
        }
      }
    } catch is CancellationError where Task.isShuttingDownGracefully {
      throw RPCError(code: .unavailable, message: "relay-server is shutting down")
    }
  }

  private func latestFrame(of entry: StreamRegistry.Entry, after cursor: UInt64, keyframeOnly: Bool) async -> LiveFrame? {
    await entry.latestFrame(
      after: cursor, keyframeOnly: keyframeOnly, wait: configuration.latestFrameWait, coldStartWait: configuration.coldStartWait)
  }

  func videoBufferedImage(
    request: Chrys_Cloud_Videostreaming_V1beta1_VideoFrameBufferedRequest,
    response: RPCWriter<VideoFrame>,
    context: ServerContext
  ) async throws {
    let entry = try knownDevice(request.deviceID)
    let toMs = request.timestampTo == 0 ? Int64.max : request.timestampTo
    guard request.timestampFrom <= toMs else {
      throw RPCError(
        code: .invalidArgument,
        message: "timestamp_from \(request.timestampFrom) is after timestamp_to \(request.timestampTo) (ms since the Unix epoch)")
    }
    let ring = entry.stream.replayBounds(fromMs: request.timestampFrom, toMs: toMs)
    let recorded = recordedPackets(entry.stream, fromMs: request.timestampFrom, toMs: toMs)
    guard ring != nil || recorded != nil else { return }  // nothing in the range: zero frames, OK
    guard replays.tryAcquire() else {
      throw RPCError(
        code: .resourceExhausted,
        message: "\(replays.limit) VideoBufferedImage calls are already decoding; try again when one ends")
    }
    defer { replays.release() }
    let replay = BufferedReplay(
      stream: entry.stream, ring: ring, recorded: recorded, fromMs: request.timestampFrom, toMs: toMs,
      metrics: metrics, logger: logger)
    let (frames, thread) = replay.start()
    do {
      while let frame = try await frames.next() {
        try await response.write(VideoFrame(frame, device: entry.stream.id))
      }
    } catch {
      frames.finish()  // a cancelled or failed call stops the decoding thread at its next frame
      await thread.joined()
      throw error
    }
    await thread.joined()
  }

  /// When the range starts before the ring: reads the recorded packets that precede it (on the
  /// replay's thread: listing and demuxing segments blocks).
  private func recordedPackets(_ device: DeviceStream, fromMs: Int64, toMs: Int64) -> (@Sendable () -> [StoredPacket])? {
    let ringStartMs = device.bufferSummary?.startMs ?? Int64.max
    guard fromMs > 0, fromMs < ringStartMs else { return nil }
    let beforeMs = min(ringStartMs, toMs == .max ? .max : toMs + 1)
    let (recordings, id, logger) = (recordings, device.id, logger)
    return {
      RecordedPackets.read(recordings.segments(of: id), fromMs: fromMs, beforeMs: beforeMs, logger: logger)
    }
  }

  func videoProbe(
    request: Chrys_Cloud_Videostreaming_V1beta1_VideoProbeRequest,
    context: ServerContext
  ) async throws -> Chrys_Cloud_Videostreaming_V1beta1_VideoProbeResponse {
    let device = try knownDevice(request.deviceID).stream
    var probe = Chrys_Cloud_Videostreaming_V1beta1_VideoProbeResponse()
    if let codec = device.codec {
      probe.videoCodec = .with {
        $0.name = codec.name
        $0.longName = MediaLibrary.codecLongName(codec.name)
        $0.width = Int32(codec.width)
        $0.height = Int32(codec.height)
        $0.pixFmt = codec.pixelFormat
        $0.extradata = codec.extradata
        $0.extradataSize = Int32(codec.extradata.count)
      }
    }
    if let buffer = device.bufferSummary {
      probe.buffer = .with {
        $0.startTime = buffer.startMs
        $0.endTime = buffer.endMs
        $0.durationSeconds = (buffer.endMs - buffer.startMs) / 1000
        $0.frames = Int64(buffer.frames)
        $0.approximateFps = Int32(
          ApproximateFrameRate.of(
            frames: buffer.recentFrames, spanMs: buffer.recentSpanMs, nominal: device.codec?.frameRate ?? 0))
      }
    }
    return probe
  }

  func listStreams(
    request: Chrys_Cloud_Videostreaming_V1beta1_ListStreamRequest,
    response: RPCWriter<Chrys_Cloud_Videostreaming_V1beta1_ListStream>,
    context: ServerContext
  ) async throws {
    for entry in registry.all where Access.allows(device: entry.stream.id.rawValue) {
      let status = entry.stream.status
      let state = StreamState(status)
      try await response.write(
        .with {
          $0.name = entry.stream.id.rawValue
          $0.status = state.rawValue
          $0.running = state == .running
          $0.restarting = state == .restarting
          $0.dead = state == .stopped || state == .failed
          $0.healthStatus = state == .running ? "healthy" : "unhealthy"
          $0.failingStreak = status.failingStreak
          $0.pid = status.pid
          $0.error = [recordings.failure(entry.stream.id), status.lastError]
            .compactMap { $0?.isEmpty == false ? $0 : nil }.joined(separator: "; ")
        })
    }
  }

  /// Answers OK only once the annotation is durable in the outbox. The caller may name the annotation's
  /// stable id in `x-annotation-id` (a forwarding relay-server does); a repeated id is stored once.
  func annotate(
    request: ServerRequest<AnnotateRequest>,
    context: ServerContext
  ) async throws -> ServerResponse<Chrys_Cloud_Videostreaming_V1beta1_AnnotateResponse> {
    let id = request.metadata[stringValues: GRPCUpstream.idMetadataKey].first { !$0.isEmpty }
    return ServerResponse(message: try await store(request.message, id: id))
  }

  /// Required by SimpleServiceProtocol; the metadata-aware method above is the one gRPC calls.
  func annotate(
    request: AnnotateRequest,
    context: ServerContext
  ) async throws -> Chrys_Cloud_Videostreaming_V1beta1_AnnotateResponse {
    try await store(request, id: nil)
  }

  private func store(
    _ annotation: AnnotateRequest, id: String?
  ) async throws -> Chrys_Cloud_Videostreaming_V1beta1_AnnotateResponse {
    if let problem = AnnotationValidation.problem(in: annotation) {
      throw RPCError(code: .invalidArgument, message: problem)
    }
    try Access.require(device: annotation.deviceName)
    do {
      try await outbox.add(
        id: id ?? UUID().uuidString.lowercased(), device: annotation.deviceName,
        request: try annotation.serializedBytes())
    } catch let error as OutboxError {
      annotationMetrics.recordStoreFailure()
      switch error {
      case .full:
        throw RPCError(code: .resourceExhausted, message: "annotation not stored: \(error); free space there")
      case .unwritable:
        throw RPCError(
          code: .failedPrecondition, message: "annotation not stored: \(error); make --data-dir writable")
      }
    }
    annotationMetrics.recordStored()
    return .with {
      $0.deviceName = annotation.deviceName
      $0.remoteStreamID = annotation.remoteStreamID
      $0.type = annotation.type
      $0.startTimestamp = annotation.startTimestamp
    }
  }

  /// passthrough=true remuxes the device's packets to its configured RTMP endpoint; false stops.
  func proxy(
    request: Chrys_Cloud_Videostreaming_V1beta1_ProxyRequest,
    context: ServerContext
  ) async throws -> Chrys_Cloud_Videostreaming_V1beta1_ProxyResponse {
    let device = try knownDevice(request.deviceID).stream
    if request.passthrough {
      guard let url = proxies.endpoint(for: device.id) else {
        throw RPCError(
          code: .failedPrecondition,
          message: "no RTMP endpoint is configured for device \(device.id): start relay-server with --rtmp-endpoint \(device.id)=rtmp://HOST/APP/KEY (or '*=rtmp://HOST/APP/{device}' for every device)")
      }
      proxies.start(device, url: url)
    } else {
      await proxies.stop(device.id)
    }
    return .with {
      $0.deviceID = device.id.rawValue
      $0.passthrough = request.passthrough
    }
  }

  /// start=true records the device into MP4 segments from its next keyframe; false closes the segment
  /// (the answer comes once it is closed).
  func storage(
    request: Chrys_Cloud_Videostreaming_V1beta1_StorageRequest,
    context: ServerContext
  ) async throws -> Chrys_Cloud_Videostreaming_V1beta1_StorageResponse {
    let device = try knownDevice(request.deviceID).stream
    if request.start {
      recordings.start(device)
    } else {
      await recordings.stop(device.id)
    }
    return .with {
      $0.deviceID = device.id.rawValue
      $0.start = request.start
    }
  }

  func systemTime(
    request: Chrys_Cloud_Videostreaming_V1beta1_SystemTimeRequest,
    context: ServerContext
  ) async throws -> Chrys_Cloud_Videostreaming_V1beta1_SystemTimeResponse {
    .with { $0.currentTime = WallClock.nowMs() }
  }

  private func knownDevice(_ rawID: String) throws(RPCError) -> StreamRegistry.Entry {
    let id: DeviceID
    do { id = try DeviceID(validating: rawID) } catch {
      throw RPCError(code: .invalidArgument, message: error.description)
    }
    // Before the lookup: a caller learns nothing about devices it may not use.
    try Access.require(device: id.rawValue)
    guard let entry = registry.entry(id) else {
      throw RPCError(code: .notFound, message: "device \(id) has never published to this server (see ListStreams)")
    }
    return entry
  }
}

/// ListStreams' status words.
enum StreamState: String {
  case running, restarting, failed, stopped

  init(_ status: DeviceStream.Status) {
    guard status.connected else { self = .stopped; return }
    switch status.capture {
    case .running: self = .running
    case .reconnecting: self = .restarting
    case .failed: self = .failed
    case .stopped: self = .stopped
    }
  }
}

/// A frame rate consumers can pace themselves with: always finite and at least 1 when frames exist.
enum ApproximateFrameRate {
  static func of(frames: Int, spanMs: Int64, nominal: Double) -> Int {
    guard frames > 0 else { return 0 }
    if frames >= 2 && spanMs > 0 {
      let measured = Double(frames - 1) * 1000 / Double(spanMs)
      return max(1, min(1000, Int(measured.rounded())))
    }
    if nominal.isFinite && nominal >= 1 { return min(1000, Int(nominal.rounded())) }
    return 1
  }
}

extension VideoFrame {
  init(_ frame: LiveFrame, device: DeviceID) {
    self.init()
    let codec = frame.codec.description
    width = Int64(frame.width)
    height = Int64(frame.height)
    data = frame.bgr24
    timestamp = frame.timestampMs
    isKeyframe = frame.isKeyframe
    pts = frame.pts
    dts = frame.dts
    frameType = frame.pictureType
    isCorrupt = frame.isCorrupt
    timeBase = codec.timeBase.doubleValue
    shape = .with {
      $0.dim = [Int64(frame.height), Int64(frame.width), 3].enumerated().map { index, size in
        .with { $0.size = size; $0.name = "\(index)" }
      }
    }
    deviceID = device.rawValue
    // An AVA sender's sequence numbers can be any UInt64; the field is signed.
    packet = Int64(clamping: frame.sequence)
    keyframe = Int64(clamping: frame.keyframeSequence)
    extradata = codec.extradata
    codecName = codec.name
    pixFmt = "bgr24"
  }
}
