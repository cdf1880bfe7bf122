//! The input redundancy ring: numbers inputs and decides which go into each datagram.
//!
//! Inputs travel unreliably, so every datagram repeats the most recent inputs the
//! server has not yet confirmed (`SnapshotHeader::input_ack`). The ring holds at most
//! `redundancy` inputs; an input older than that has already been sent `redundancy`
//! times and is given up on (inputs are states, so a newer one supersedes it).

use crate::seq;
use std::collections::VecDeque;
use zonemesh_shared::datagram::{INPUTS_PER_DATAGRAM_MAX, InputFrame};
use zonemesh_shared::quant::Vec2;

/// Unacknowledged inputs, oldest first.
#[derive(Debug)]
pub(crate) struct InputRing {
    frames: VecDeque<InputFrame>,
    /// Most inputs per datagram (newest plus `redundancy - 1` older), 1..=8.
    redundancy: usize,
    /// Sequence number of the next input.
    next_seq: u32,
}

impl InputRing {
    /// A ring sending each input in up to `redundancy` datagrams (clamped to 1..=8).
    pub(crate) fn new(redundancy: usize) -> Self {
        let redundancy = redundancy.clamp(1, INPUTS_PER_DATAGRAM_MAX);
        Self {
            frames: VecDeque::with_capacity(redundancy),
            redundancy,
            // 0 is the server's "no input applied yet", so numbering starts at 1.
            next_seq: 1,
        }
    }

    /// Numbers a new input and keeps it for redundancy; returns the frame.
    pub(crate) fn push(&mut self, velocity: Vec2, buttons: u8) -> InputFrame {
        let frame = InputFrame {
            seq: self.next_seq,
            velocity,
            buttons,
        };
        self.next_seq = match self.next_seq.wrapping_add(1) {
            0 => 1,
            n => n,
        };
        if self.frames.len() == self.redundancy {
            self.frames.pop_front();
        }
        self.frames.push_back(frame);
        frame
    }

    /// Forgets inputs the server has applied (sequence numbers up to `input_ack`).
    pub(crate) fn acknowledge(&mut self, input_ack: u32) {
        while self
            .frames
            .front()
            .is_some_and(|f| !seq::newer(f.seq, input_ack))
        {
            self.frames.pop_front();
        }
    }

    /// The inputs for the next datagram: newest first, all still unacknowledged.
    pub(crate) fn datagram_inputs(&self) -> Vec<InputFrame> {
        self.frames.iter().rev().copied().collect()
    }

    /// Inputs kept for redundancy now.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.frames.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seqs(ring: &InputRing) -> Vec<u32> {
        ring.datagram_inputs().iter().map(|f| f.seq).collect()
    }

    #[test]
    fn newest_first_bounded_by_redundancy() {
        let mut ring = InputRing::new(4);
        for i in 0..6 {
            let f = ring.push(Vec2::new(i as f32, 0.0), 0);
            assert_eq!(f.seq, i + 1);
        }
        assert_eq!(seqs(&ring), vec![6, 5, 4, 3]);
    }

    #[test]
    fn acknowledged_inputs_are_not_repeated() {
        let mut ring = InputRing::new(8);
        for _ in 0..5 {
            ring.push(Vec2::ZERO, 1);
        }
        ring.acknowledge(3);
        assert_eq!(seqs(&ring), vec![5, 4]);
        ring.acknowledge(5);
        assert_eq!(ring.len(), 0);
        assert!(ring.datagram_inputs().is_empty());
        // An old acknowledgement arriving late changes nothing.
        ring.push(Vec2::ZERO, 0);
        ring.acknowledge(2);
        assert_eq!(seqs(&ring), vec![6]);
    }

    #[test]
    fn redundancy_is_clamped_to_the_protocol_limit() {
        let mut ring = InputRing::new(50);
        for _ in 0..20 {
            ring.push(Vec2::ZERO, 0);
        }
        assert_eq!(ring.len(), INPUTS_PER_DATAGRAM_MAX);
        let mut one = InputRing::new(0);
        one.push(Vec2::ZERO, 0);
        one.push(Vec2::ZERO, 0);
        assert_eq!(seqs(&one), vec![2]);
    }

    #[test]
    fn sequence_wraps_past_zero() {
        let mut ring = InputRing::new(4);
        ring.next_seq = u32::MAX;
        assert_eq!(ring.push(Vec2::ZERO, 0).seq, u32::MAX);
        assert_eq!(ring.push(Vec2::ZERO, 0).seq, 1);
        ring.acknowledge(u32::MAX);
        assert_eq!(seqs(&ring), vec![1]);
    }
}
