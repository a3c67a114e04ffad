import CFFmpeg
import Foundation

/// Encodes pictures (for sources that give raw pixels: the test pattern, raw V4L2 cameras).
/// Not thread-safe: one encoder, one thread.
public final class VideoEncoder {
  public let codecName: String
  /// Codec configuration out of band (SPS/PPS for H.264), sent to the server in the hello.
  public private(set) var extradata = Data()
  private var context: UnsafeMutablePointer<AVCodecContext>?
  private let packet: UnsafeMutablePointer<AVPacket>

  /// - Parameters:
  ///   - gop: frames between keyframes.
  ///   - options: private codec options, e.g. `["preset": "ultrafast", "tune": "zerolatency"]`.
  public init(
    codecName: String, width: Int, height: Int, pixelFormat: String, frameRate: Int, gop: Int,
    bitRate: Int = 0, options: [String: String] = [:]
  ) throws(MediaError) {
    MediaLibrary.setUp()
    guard let codec = avcodec_find_encoder_by_name(codecName) else {
      throw MediaError(operation: "open encoder", message: "this FFmpeg has no encoder \"\(codecName)\"")
    }
    guard let context = avcodec_alloc_context3(codec) else {
      throw MediaError(operation: "open encoder", message: "out of memory")
    }
    context.pointee.width = Int32(width)
    context.pointee.height = Int32(height)
    context.pointee.pix_fmt = av_get_pix_fmt(pixelFormat)
    context.pointee.time_base = AVRational(num: 1, den: Int32(frameRate))
    context.pointee.framerate = AVRational(num: Int32(frameRate), den: 1)
    context.pointee.gop_size = Int32(gop)
    context.pointee.max_b_frames = 0
    if bitRate > 0 { context.pointee.bit_rate = Int64(bitRate) }
    // SPS/PPS go in extradata (the hello carries them) rather than repeating in the stream.
    context.pointee.flags |= cff_codec_flag_global_header()
    var dictionary: OpaquePointer? = nil
    defer { av_dict_free(&dictionary) }
    for (key, value) in options { av_dict_set(&dictionary, key, value, 0) }
    let status = avcodec_open2(context, codec, &dictionary)
    if status < 0 {
      var pointer: UnsafeMutablePointer<AVCodecContext>? = context
      avcodec_free_context(&pointer)
      throw MediaError(operation: "open \(codecName) encoder", code: status)
    }
    if let bytes = context.pointee.extradata, context.pointee.extradata_size > 0 {
      extradata = Data(bytes: bytes, count: Int(context.pointee.extradata_size))
    }
    self.codecName = codecName
    self.context = context
    self.packet = av_packet_alloc()
  }

  deinit {
    avcodec_free_context(&context)
    var packet: UnsafeMutablePointer<AVPacket>? = self.packet
    av_packet_free(&packet)
  }

  public var timeBase: (numerator: Int32, denominator: Int32) {
    (context!.pointee.time_base.num, context!.pointee.time_base.den)
  }

  /// Encodes one decoded picture with presentation time `pts` (in `timeBase`); returns the packets ready.
  public func encode(_ picture: DecodedPicture, pts: Int64) throws(MediaError) -> [MediaPacket] {
    picture.frame.pointee.pts = pts
    picture.frame.pointee.pict_type = AV_PICTURE_TYPE_NONE
    try check(avcodec_send_frame(context, picture.frame), "encode")
    return try receivePackets()
  }

  /// Drains the packets still held inside the encoder.
  public func flush() throws(MediaError) -> [MediaPacket] {
    _ = avcodec_send_frame(context, nil)
    return try receivePackets()
  }

  private func receivePackets() throws(MediaError) -> [MediaPacket] {
    var packets: [MediaPacket] = []
    while true {
      let status = avcodec_receive_packet(context, packet)
      if status == cff_averror(EAGAIN) || status == cff_averror_eof() { return packets }
      try check(status, "encode")
      defer { av_packet_unref(packet) }
      packets.append(
        MediaPacket(
          data: PacketData.take(packet), pts: packet.pointee.pts, dts: packet.pointee.dts,
          duration: packet.pointee.duration, isKeyframe: packet.pointee.flags & cff_pkt_flag_key() != 0))
    }
  }
}
