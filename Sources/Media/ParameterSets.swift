import Foundation

/// Containers want the codec's parameter sets up front. A stream that carries them only in-band
/// (an Annex B keyframe with SPS/PPS) gets them copied out of its first keyframe.
public enum ParameterSets {
  /// The parameter-set NAL units of an Annex B access unit, each with a 4-byte start code; empty when
  /// there are none or the codec is not H.264/HEVC.
  public static func annexB(in accessUnit: Data, codecName: String) -> Data {
    let wanted: (UInt8) -> Bool
    switch codecName {
    case "h264": wanted = { header in [7, 8].contains(header & 0x1f) }
    case "hevc", "h265": wanted = { header in (32...34).contains((header >> 1) & 0x3f) }
    default: return Data()
    }
    var sets = Data()
    for unit in nalUnits(accessUnit) where !unit.isEmpty && wanted(unit[unit.startIndex]) {
      sets.append(contentsOf: [0, 0, 0, 1])
      sets.append(unit)
    }
    return sets
  }

  /// The NAL units between Annex B start codes (00 00 01 or 00 00 00 01).
  static func nalUnits(_ data: Data) -> [Data] {
    let bytes = [UInt8](data)
    var starts: [(code: Int, payload: Int)] = []
    var index = 0
    while index + 2 < bytes.count {
      if bytes[index] == 0 && bytes[index + 1] == 0 && bytes[index + 2] == 1 {
        let code = index > 0 && bytes[index - 1] == 0 ? index - 1 : index
        starts.append((code, index + 3))
        index += 3
      } else {
        index += 1
      }
    }
    return starts.enumerated().map { position, start in
      let end = position + 1 < starts.count ? starts[position + 1].code : bytes.count
      return Data(bytes[start.payload..<max(start.payload, end)])
    }
  }
}
