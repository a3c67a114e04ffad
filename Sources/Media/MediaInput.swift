import CFFmpeg
import Foundation
import Synchronization

/// An opened input (RTSP URL, file, v4l2 device, lavfi graph) and its best video stream.
/// Reads block: use it from a thread of its own; a `MediaInterrupt` set from any thread unblocks them.
public final class MediaInput {
  public let stream: VideoStreamInfo
  private var context: UnsafeMutablePointer<AVFormatContext>?
  private let streamIndex: Int32
  private let packet: UnsafeMutablePointer<AVPacket>
  private let interruptFlag: MediaInterrupt

  /// - Parameters:
  ///   - url: what to open, as FFmpeg names it.
  ///   - format: an input format to force ("lavfi", "v4l2"), nil to probe.
  ///   - options: demuxer/protocol options (`rtsp_transport`, `timeout` in µs, ...).
  ///   - interrupt: once set, blocked and later reads fail at once (used to stop a capture).
  public init(
    url: String, format: String? = nil, options: [String: String] = [:], interrupt: MediaInterrupt = MediaInterrupt()
  ) throws(MediaError) {
    MediaLibrary.setUp()
    let interruptFlag = interrupt
    self.interruptFlag = interruptFlag

    var inputFormat: UnsafePointer<AVInputFormat>? = nil
    if let format {
      inputFormat = av_find_input_format(format)
      if inputFormat == nil {
        throw MediaError(
          operation: "open \(url)",
          message: "unknown input format \(format)" + (["v4l2", "lavfi"].contains(format) ? " (MediaDevices.register() makes it known)" : ""))
      }
    }
    var dictionary: OpaquePointer? = nil
    defer { av_dict_free(&dictionary) }
    for (key, value) in options { av_dict_set(&dictionary, key, value, 0) }

    var context = avformat_alloc_context()
    guard context != nil else { throw MediaError(operation: "open \(url)", message: "out of memory") }
    context!.pointee.interrupt_callback.callback = { opaque in
      guard let opaque else { return 0 }
      return Unmanaged<MediaInterrupt>.fromOpaque(opaque).takeUnretainedValue().isSet ? 1 : 0
    }
    context!.pointee.interrupt_callback.opaque = Unmanaged.passUnretained(interruptFlag).toOpaque()

    // On failure avformat_open_input frees the context and sets it to nil.
    try check(avformat_open_input(&context, url, inputFormat, &dictionary), "open \(url)")
    do {
      try check(avformat_find_stream_info(context, nil), "read stream info of \(url)")
      let index = av_find_best_stream(context, AVMEDIA_TYPE_VIDEO, -1, -1, nil, 0)
      try check(index, "find a video stream in \(url)")
      self.streamIndex = index
      self.stream = Self.describe(context!.pointee.streams[Int(index)]!)
    } catch {
      avformat_close_input(&context)
      throw error
    }
    self.context = context
    self.packet = av_packet_alloc()
  }

  deinit {
    avformat_close_input(&context)
    var packet: UnsafeMutablePointer<AVPacket>? = self.packet
    av_packet_free(&packet)
  }

  /// The next packet of the video stream, or nil at the end of the input.
  public func readVideoPacket() throws(MediaError) -> MediaPacket? {
    while true {
      let status = av_read_frame(context, packet)
      if status == cff_averror_eof() { return nil }
      try check(status, "read")
      defer { av_packet_unref(packet) }
      guard packet.pointee.stream_index == streamIndex else { continue }
      let noValue = cff_nopts_value()
      return MediaPacket(
        data: PacketData.take(packet),
        pts: packet.pointee.pts == noValue ? nil : packet.pointee.pts,
        dts: packet.pointee.dts == noValue ? nil : packet.pointee.dts,
        duration: packet.pointee.duration,
        isKeyframe: packet.pointee.flags & cff_pkt_flag_key() != 0)
    }
  }

  /// Back to the start of the input, as `ffmpeg -stream_loop` goes round: far cheaper than opening it
  /// again, which probes the streams (decoding frames) every time. Fails for inputs that cannot seek.
  public func rewind() throws(MediaError) {
    let start = context!.pointee.start_time == cff_nopts_value() ? 0 : context!.pointee.start_time
    try check(avformat_seek_file(context, -1, Int64.min, start, start, 0), "rewind")
  }

  private static func describe(_ stream: UnsafeMutablePointer<AVStream>) -> VideoStreamInfo {
    let parameters = stream.pointee.codecpar.pointee
    let pixelFormatName = av_get_pix_fmt_name(AVPixelFormat(rawValue: parameters.format)).map { String(cString: $0) }
    var extradata = Data()
    if let bytes = parameters.extradata, parameters.extradata_size > 0 {
      extradata = Data(bytes: bytes, count: Int(parameters.extradata_size))
    }
    let rate = stream.pointee.avg_frame_rate.den > 0 ? stream.pointee.avg_frame_rate : stream.pointee.r_frame_rate
    return VideoStreamInfo(
      codecName: String(cString: avcodec_get_name(parameters.codec_id)),
      width: Int(parameters.width),
      height: Int(parameters.height),
      pixelFormat: pixelFormatName ?? "",
      extradata: extradata,
      timeBaseNumerator: stream.pointee.time_base.num,
      timeBaseDenominator: stream.pointee.time_base.den,
      frameRate: rate.den > 0 ? Double(rate.num) / Double(rate.den) : 0)
  }
}

/// Set it from any thread to make an input's blocked or future reads fail at once.
public final class MediaInterrupt: Sendable {
  private let flag = Atomic<Bool>(false)
  public init() {}
  public var isSet: Bool { flag.load(ordering: .relaxed) }
  public func set() { flag.store(true, ordering: .relaxed) }
}
