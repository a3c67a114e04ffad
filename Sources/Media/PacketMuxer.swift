import CFFmpeg
import Foundation

/// Writes one video stream's encoded packets into a container (MP4 file, FLV over RTMP, ...) as they
/// are, without re-encoding. Writes block: use it from a thread of its own; a `MediaInterrupt` set
/// from any thread makes a blocked network write fail at once.
public final class PacketMuxer {
  public let url: String
  private var context: UnsafeMutablePointer<AVFormatContext>?
  private let packet: UnsafeMutablePointer<AVPacket>
  private let inputTimeBase: AVRational
  private let interrupt: MediaInterrupt
  private var finished = false

  /// - Parameters:
  ///   - format: the muxer ("mp4", "flv").
  ///   - extradata: the codec's parameter sets (Annex B or avcC/hvcC); the muxers convert Annex B.
  ///   - timeBase: what `write`'s pts and dts count in.
  ///   - options: muxer and protocol options (`movflags`, `rw_timeout`, ...).
  public init(
    url: String, format: String, codecName: String, width: Int, height: Int, extradata: Data,
    timeBase: (numerator: Int32, denominator: Int32), options: [String: String] = [:],
    interrupt: MediaInterrupt = MediaInterrupt()
  ) throws(MediaError) {
    MediaLibrary.setUp()
    self.url = url
    self.interrupt = interrupt
    self.inputTimeBase = AVRational(num: timeBase.numerator, den: timeBase.denominator)
    guard let codecID = avcodec_descriptor_get_by_name(codecName)?.pointee.id else {
      throw MediaError(operation: "open \(url)", message: "unknown codec \"\(codecName)\"")
    }
    var context: UnsafeMutablePointer<AVFormatContext>?
    try check(avformat_alloc_output_context2(&context, nil, format, url), "open \(format) output \(url)")
    guard let context else { throw MediaError(operation: "open \(url)", message: "out of memory") }
    self.context = context
    self.packet = av_packet_alloc()
    context.pointee.interrupt_callback.callback = { opaque in
      guard let opaque else { return 0 }
      return Unmanaged<MediaInterrupt>.fromOpaque(opaque).takeUnretainedValue().isSet ? 1 : 0
    }
    context.pointee.interrupt_callback.opaque = Unmanaged.passUnretained(interrupt).toOpaque()

    guard let stream = avformat_new_stream(context, nil) else {
      throw MediaError(operation: "open \(url)", message: "out of memory")
    }
    let parameters = stream.pointee.codecpar!
    parameters.pointee.codec_type = AVMEDIA_TYPE_VIDEO
    parameters.pointee.codec_id = codecID
    parameters.pointee.width = Int32(width)
    parameters.pointee.height = Int32(height)
    if !extradata.isEmpty {
      guard let buffer = av_mallocz(extradata.count + Int(AV_INPUT_BUFFER_PADDING_SIZE)) else {
        throw MediaError(operation: "open \(url)", message: "out of memory")
      }
      extradata.copyBytes(to: buffer.assumingMemoryBound(to: UInt8.self), count: extradata.count)
      parameters.pointee.extradata = buffer.assumingMemoryBound(to: UInt8.self)
      parameters.pointee.extradata_size = Int32(extradata.count)
    }
    stream.pointee.time_base = inputTimeBase

    var dictionary: OpaquePointer? = nil
    defer { av_dict_free(&dictionary) }
    for (key, value) in options { av_dict_set(&dictionary, key, value, 0) }
    if context.pointee.oformat.pointee.flags & AVFMT_NOFILE == 0 {
      try check(
        avio_open2(&context.pointee.pb, url, AVIO_FLAG_WRITE, &context.pointee.interrupt_callback, &dictionary),
        "open \(url) for writing")
    }
    try check(avformat_write_header(context, &dictionary), "write the \(format) header to \(url)")
  }

  deinit {
    if let context {
      if context.pointee.oformat.pointee.flags & AVFMT_NOFILE == 0 { avio_closep(&context.pointee.pb) }
      avformat_free_context(context)
    }
    var packet: UnsafeMutablePointer<AVPacket>? = self.packet
    av_packet_free(&packet)
  }

  /// Writes one packet; pts and dts count in the `timeBase` given at init.
  public func write(_ data: Data, pts: Int64, dts: Int64, isKeyframe: Bool) throws(MediaError) {
    guard let context, !finished else { throw MediaError(operation: "write to \(url)", message: "already closed") }
    try check(av_new_packet(packet, Int32(data.count)), "write to \(url)")
    defer { av_packet_unref(packet) }
    data.copyBytes(to: packet.pointee.data, count: data.count)
    let streamTimeBase = context.pointee.streams[0]!.pointee.time_base
    packet.pointee.pts = av_rescale_q(pts, inputTimeBase, streamTimeBase)
    packet.pointee.dts = av_rescale_q(dts, inputTimeBase, streamTimeBase)
    packet.pointee.stream_index = 0
    if isKeyframe { packet.pointee.flags |= cff_pkt_flag_key() }
    try check(av_write_frame(context, packet), "write to \(url)")
  }

  /// Writes the trailer and closes: the container is complete.
  public func finish() throws(MediaError) {
    guard let context, !finished else { return }
    finished = true
    let status = av_write_trailer(context)
    var closeStatus: Int32 = 0
    if context.pointee.oformat.pointee.flags & AVFMT_NOFILE == 0 { closeStatus = avio_closep(&context.pointee.pb) }
    try check(status, "finish \(url)")
    try check(closeStatus, "close \(url)")
  }
}
