extension StreamRegistry.Entry {
  /// The newest frame after `cursor`, starting the live decoder if it is not running. A cold stream
  /// (no frame decoded in this decoder run) waits for the picture of the newest packet stored, decoded
  /// from the newest keyframe, up to `coldStartWait`; a warm one waits `wait` for a frame newer than
  /// the cursor. VideoLatestImage and the web page's snapshots both take pictures this way.
  func latestFrame(after cursor: UInt64, keyframeOnly: Bool, wait: Duration, coldStartWait: Duration) async -> LiveFrame? {
    decoder.demand()
    let frames = stream.frames
    guard !frames.hasFrame, stream.newestIndex > 0 else {
      return await frames.next(after: cursor, keyframeOnly: keyframeOnly, timeout: wait)
    }
    let target = keyframeOnly ? stream.indexBeforeNewestKeyframe + 1 : stream.newestIndex
    if let frame = await frames.next(after: max(cursor, target - 1), keyframeOnly: keyframeOnly, timeout: coldStartWait) {
      return frame
    }
    // The newest packet gave no picture of its own (a decoder holding frames back): the newest there is.
    return await frames.next(after: cursor, keyframeOnly: keyframeOnly, timeout: .zero)
  }
}
