package dev.faultline.conform;

import dev.faultline.guest.GuestImage;
import dev.faultline.ref.x86.Decoder;
import dev.faultline.ref.x86.FlagEffect;
import dev.faultline.ref.x86.Insn;
import dev.faultline.ref.x86.Op;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.HashSet;
import java.util.HexFormat;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * An independent check that a guest image never reads a status flag that may be undefined: it decodes
 * the machine code (the bytes the backends run, not the generator's description of them) with ref's
 * decoder, builds the control-flow graph (jcc: both ways, jmp, call into the subroutine and back after
 * its ret, hlt) and runs a forward dataflow of "defined flags" to its fixed point, joining by
 * intersection. A shift by CL counts as every count. Calls are analysed per call site (generated code
 * has no recursion).
 */
final class FlagReadChecker {
    private FlagReadChecker() {}

    /** What the check found: every instruction that may read an undefined flag, and the flags defined at hlt. */
    record Result(List<String> violations, long definedAtEnd) {}

    private static final int MAX_CALL_DEPTH = 32;

    private record Code(long[] address, Insn[] insns, Map<Long, Integer> index, byte[] bytes, long base) {}

    static Result check(GuestImage image) {
        Code code = decode(image);
        Map<Integer, String> violations = new LinkedHashMap<>();
        Integer entry = code.index.get(image.entry());
        if (entry == null) throw new IllegalArgumentException("the entry point is not an instruction boundary");
        long end = analyse(code, entry, FlagEffect.STATUS, 0, violations);
        return new Result(new ArrayList<>(violations.values()), end);
    }

    private static Code decode(GuestImage image) {
        byte[] bytes = image.bytes();
        List<Long> addresses = new ArrayList<>();
        List<Insn> insns = new ArrayList<>();
        Map<Long, Integer> index = new HashMap<>();
        Decoder decoder = new Decoder();
        for (int pos = 0; pos < bytes.length; ) {
            Insn in = new Insn();
            byte[] window = Arrays.copyOfRange(bytes, pos, Math.min(bytes.length, pos + Decoder.MAX_LEN + 1));
            if (decoder.decode(window, window.length, in) != Decoder.OK || in.op == Op.UNSUPPORTED || in.op == Op.EXCEPTION) {
                throw new IllegalArgumentException("no supported instruction at +0x" + Integer.toHexString(pos));
            }
            index.put(image.loadGpa() + pos, insns.size());
            addresses.add(image.loadGpa() + pos);
            insns.add(in);
            pos += in.len;
        }
        return new Code(addresses.stream().mapToLong(Long::longValue).toArray(), insns.toArray(new Insn[0]), index, bytes, image.loadGpa());
    }

    /**
     * The flags defined where the code from {@code start} returns (ret) or stops (hlt), given
     * {@code entry} defined at {@code start}; violations are added as found (keyed by instruction).
     */
    private static long analyse(Code code, int start, long entry, int depth, Map<Integer, String> violations) {
        if (depth > MAX_CALL_DEPTH) throw new IllegalArgumentException("calls nest deeper than " + MAX_CALL_DEPTH);
        int n = code.insns.length;
        long[] in = new long[n];
        boolean[] reached = new boolean[n];
        ArrayDeque<Integer> work = new ArrayDeque<>();
        Set<Integer> queued = new HashSet<>();
        long exit = FlagEffect.STATUS;
        boolean exited = false;
        in[start] = entry;
        reached[start] = true;
        work.add(start);
        queued.add(start);
        while (!work.isEmpty()) {
            int i = work.poll();
            queued.remove(i);
            Insn insn = code.insns[i];
            FlagEffect e = FlagEffect.ofAnyCount(insn);
            long missing = e.reads() & ~in[i];
            if (missing != 0) violations.putIfAbsent(i, describe(code, i) + " reads " + FlagEffect.names(missing) + ", which may be undefined there");
            long out = e.after(in[i]);
            long next = code.address[i] + insn.len;
            switch (insn.op) {
                case Op.JCC, Op.LOOP -> {
                    flow(code, i + 1, out, in, reached, work, queued);
                    flow(code, target(code, next + insn.imm, i), out, in, reached, work, queued);
                }
                case Op.JMP -> flow(code, target(code, next + insn.imm, i), out, in, reached, work, queued);
                case Op.CALL -> {
                    long back = analyse(code, target(code, next + insn.imm, i), out, depth + 1, violations);
                    flow(code, i + 1, back, in, reached, work, queued);
                }
                case Op.RET, Op.HLT -> {
                    exit &= out;
                    exited = true;
                }
                case Op.JMP_IND, Op.CALL_IND -> throw new IllegalArgumentException(describe(code, i) + ": an indirect branch");
                default -> flow(code, i + 1, out, in, reached, work, queued);
            }
        }
        if (!exited) throw new IllegalArgumentException("the code from " + describe(code, start) + " never returns or halts");
        return exit;
    }

    private static void flow(Code code, int j, long state, long[] in, boolean[] reached, ArrayDeque<Integer> work, Set<Integer> queued) {
        if (j >= code.insns.length) throw new IllegalArgumentException("execution runs off the end of the image");
        long joined = reached[j] ? in[j] & state : state;
        if (reached[j] && joined == in[j]) return;
        in[j] = joined;
        reached[j] = true;
        if (queued.add(j)) work.add(j);
    }

    private static int target(Code code, long address, int from) {
        Integer j = code.index.get(address);
        if (j == null) throw new IllegalArgumentException(describe(code, from) + " branches to 0x" + Long.toHexString(address) + ", not an instruction");
        return j;
    }

    private static String describe(Code code, int i) {
        int off = (int) (code.address[i] - code.base);
        return "the instruction at 0x" + Long.toHexString(code.address[i]) + " ("
                + HexFormat.ofDelimiter(" ").formatHex(code.bytes, off, off + code.insns[i].len) + ")";
    }
}
