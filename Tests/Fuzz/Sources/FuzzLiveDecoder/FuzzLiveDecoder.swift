// The live decoder: packets a publisher sent, fed to PacketDecoder exactly as the server's live decoder
// thread (LiveDecoder) and VideoBufferedImage's replay do: a VideoDecoder opened from the hello's
// codec description at the first keyframe (reopened after a gap or a codec change), every packet
// decoded, each picture converted to bgr24 by PictureConverter, then a flush. An input is
//   byte 0: codec (h264, hevc, mjpeg, rawvideo), byte 1: raw pixel format and row padding,
//   bytes 2, 3: the hello's width - 1 and height - 1 (1...256),
//   then pieces split by Fuzz.messageSeparator: the hello's extradata, then packets, each
//   [flags][bytes] with flags bit 0 keyframe, bit 1 follows a gap (declared drop), bit 2 a new hello
//   (same codec, a new configuration: the decoder reopens), bit 3 the previous packet's pts again.
import Foundation
import CFuzzDriver
import FuzzSupport
import Media
import RelayCore

@testable import RelayServer

private let codecs = ["h264", "hevc", "mjpeg", "rawvideo"]
private let rawFormats = ["gray", "bgr24", "rgb24", "yuv420p", "rgb565le", "bgra", "nv12", "yuyv422"]
private let device = try! DeviceID(validating: "fuzz")
private let metrics = DecoderMetrics()

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ start: UnsafeRawPointer?, _ count: Int) -> CInt {
  var reader = ByteReader(Fuzz.data(start, count))
  let name = codecs[Int(reader.byte()) % codecs.count]
  let format = reader.byte()
  let width = Int(reader.byte()) + 1
  let height = Int(reader.byte()) + 1
  let pieces = Fuzz.split(reader.rest(), on: Fuzz.messageSeparator)
  var description = CodecDescription(
    name: name, width: width, height: height, pixelFormat: name == "rawvideo" ? rawFormats[Int(format) % rawFormats.count] : "",
    extradata: pieces.first ?? Data(), timeBase: Rational(1, 90_000))
  if description.isRaw, format & 0x80 != 0,
    let rowBytes = RawPicture.packedRowBytes(pixelFormat: description.pixelFormat, width: width)
  {
    description.stride = rowBytes + Int(format >> 3 & 0x0F) + 1  // padded rows, as AVA senders send them
  }
  var codec = CodecConfiguration(description)
  var decoder = PacketDecoder(device: device, metrics: metrics, logger: Fuzz.logger)
  var pts: Int64 = 0
  var frames: [LiveFrame] = []
  for (index, piece) in pieces.dropFirst().prefix(64).enumerated() {
    var packet = ByteReader(piece)
    let flags = packet.byte()
    if flags & 4 != 0 { codec = CodecConfiguration(description) }
    if flags & 8 == 0 { pts += 3000 }
    let stored = StoredPacket(
      index: UInt64(index + 1), sequence: UInt64(index + 1), data: packet.rest(), pts: pts, dts: pts,
      isKeyframe: flags & 1 != 0, timestampMs: 1_700_000_000_000 + pts / 90, followsGap: flags & 2 != 0, codec: codec)
    _ = decoder.willReopen(for: codec)
    frames += decoder.decode(stored)
  }
  frames += decoder.flush()
  for frame in frames {
    Fuzz.require(frame.width > 0 && frame.height > 0, "a \(frame.width)x\(frame.height) picture")
    Fuzz.require(frame.bgr24.count == frame.width * frame.height * 3, "bgr24 of \(frame.bgr24.count) bytes for \(frame.width)x\(frame.height)")
    Fuzz.require(frame.packetIndex >= 1 && frame.packetIndex <= 64, "picture of packet \(frame.packetIndex)")
  }
  return 0
}

@_cdecl("FuzzLiveDecoder_main")
public func main(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>) -> CInt {
  framerelay_fuzz_driver(argc, argv)
}
