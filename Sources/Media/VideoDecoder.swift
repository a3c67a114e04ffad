import CFFmpeg
import Foundation

/// Decodes one stream's packets into pictures. Not thread-safe: one decoder, one thread.
public final class VideoDecoder {
  private var context: UnsafeMutablePointer<AVCodecContext>?
  private let packet: UnsafeMutablePointer<AVPacket>
  private let frame: UnsafeMutablePointer<AVFrame>

  public init(
    codecName: String, width: Int, height: Int, pixelFormat: String, extradata: Data,
    timeBase: (numerator: Int32, denominator: Int32)
  ) throws(MediaError) {
    MediaLibrary.setUp()
    guard let codec = avcodec_find_decoder_by_name(codecName) ?? Self.decoder(forCodecNamed: codecName) else {
      throw MediaError(operation: "open decoder", message: "no decoder for codec \"\(codecName)\"")
    }
    guard let context = avcodec_alloc_context3(codec) else {
      throw MediaError(operation: "open decoder", message: "out of memory")
    }
    context.pointee.width = Int32(width)
    context.pointee.height = Int32(height)
    let format = av_get_pix_fmt(pixelFormat)
    if format != AV_PIX_FMT_NONE { context.pointee.pix_fmt = format }
    context.pointee.pkt_timebase = AVRational(num: timeBase.numerator, den: timeBase.denominator)
    context.pointee.thread_count = 1  // live decoding of one camera per thread; threads would add latency
    if !extradata.isEmpty {
      let size = extradata.count
      guard let buffer = av_mallocz(size + Int(AV_INPUT_BUFFER_PADDING_SIZE)) else {
        throw MediaError(operation: "open decoder", message: "out of memory")
      }
      extradata.copyBytes(to: buffer.assumingMemoryBound(to: UInt8.self), count: size)
      context.pointee.extradata = buffer.assumingMemoryBound(to: UInt8.self)
      context.pointee.extradata_size = Int32(size)
    }
    let status = avcodec_open2(context, codec, nil)
    if status < 0 {
      var pointer: UnsafeMutablePointer<AVCodecContext>? = context
      avcodec_free_context(&pointer)
      throw MediaError(operation: "open \(codecName) decoder", code: status)
    }
    self.context = context
    self.packet = av_packet_alloc()
    self.frame = av_frame_alloc()
  }

  deinit {
    avcodec_free_context(&context)
    var packet: UnsafeMutablePointer<AVPacket>? = self.packet
    av_packet_free(&packet)
    var frame: UnsafeMutablePointer<AVFrame>? = self.frame
    av_frame_free(&frame)
  }

  /// Sends one packet and hands every picture it completes to `body` (valid only during the call).
  /// Corrupt input surfaces as a MediaError for this packet; the decoder stays usable.
  public func decode(
    _ data: Data, pts: Int64, dts: Int64, isKeyframe: Bool, _ body: (DecodedPicture) throws -> Void
  ) throws {
    // FFmpeg's parsers read past the end: the packet needs zeroed padding, hence this one copy.
    try check(av_new_packet(packet, Int32(data.count)), "allocate packet")
    defer { av_packet_unref(packet) }
    data.copyBytes(to: packet.pointee.data, count: data.count)
    packet.pointee.pts = pts
    packet.pointee.dts = dts
    if isKeyframe { packet.pointee.flags |= cff_pkt_flag_key() }
    let status = avcodec_send_packet(context, packet)
    if status < 0 && status != cff_averror(EAGAIN) {
      throw MediaError(operation: "decode packet", code: status)
    }
    try receivePictures(body)
  }

  /// Drains the pictures still held inside the decoder.
  public func flush(_ body: (DecodedPicture) throws -> Void) throws {
    _ = avcodec_send_packet(context, nil)
    try receivePictures(body)
    avcodec_flush_buffers(context)
  }

  private func receivePictures(_ body: (DecodedPicture) throws -> Void) throws {
    while true {
      let status = avcodec_receive_frame(context, frame)
      if status == cff_averror(EAGAIN) || status == cff_averror_eof() { return }
      try check(status, "decode")
      defer { av_frame_unref(frame) }
      try body(DecodedPicture(frame: frame))
    }
  }

  private static func decoder(forCodecNamed name: String) -> UnsafePointer<AVCodec>? {
    guard let descriptor = avcodec_descriptor_get_by_name(name) else { return nil }
    return avcodec_find_decoder(descriptor.pointee.id)
  }
}

/// A decoded picture, borrowed from the decoder: valid only during the callback that hands it out.
public struct DecodedPicture {
  let frame: UnsafeMutablePointer<AVFrame>

  public var width: Int { Int(frame.pointee.width) }
  public var height: Int { Int(frame.pointee.height) }
  /// The presentation time FFmpeg settled on (best effort when the packet had none).
  public var pts: Int64 {
    let best = frame.pointee.best_effort_timestamp
    return best != cff_nopts_value() ? best : frame.pointee.pts
  }
  public var isKeyframe: Bool { frame.pointee.key_frame != 0 }
  public var isCorrupt: Bool { frame.pointee.flags & cff_frame_flag_corrupt() != 0 || frame.pointee.decode_error_flags != 0 }
  /// "I", "P", "B" (or "?" for other picture types).
  public var pictureType: String {
    let type = av_get_picture_type_char(frame.pointee.pict_type)
    return String(UnicodeScalar(UInt8(bitPattern: type)))
  }
}
