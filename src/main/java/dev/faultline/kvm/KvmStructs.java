package dev.faultline.kvm;

import dev.faultline.hv.DescriptorTable;
import dev.faultline.hv.Regs;
import dev.faultline.hv.Segment;
import dev.faultline.hv.Sregs;
import dev.faultline.sys.KvmDtableLayout;
import dev.faultline.sys.KvmRegsLayout;
import dev.faultline.sys.KvmSegmentLayout;
import dev.faultline.sys.KvmSregsLayout;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

/** Converts between the hv register types and the kvm_regs / kvm_sregs buffers described in dev.faultline.sys. */
final class KvmStructs {
    private KvmStructs() {}

    static void readRegs(MemorySegment kvmRegs, Regs into) {
        for (int reg = 0; reg < 16; reg++) into.gpr[reg] = kvmRegs.get(ValueLayout.JAVA_LONG, KvmRegsLayout.offsetOfEncoding(reg));
        into.rip = kvmRegs.get(ValueLayout.JAVA_LONG, KvmRegsLayout.RIP);
        into.rflags = kvmRegs.get(ValueLayout.JAVA_LONG, KvmRegsLayout.RFLAGS);
    }

    static void writeRegs(Regs regs, MemorySegment kvmRegs) {
        for (int reg = 0; reg < 16; reg++) kvmRegs.set(ValueLayout.JAVA_LONG, KvmRegsLayout.offsetOfEncoding(reg), regs.gpr[reg]);
        kvmRegs.set(ValueLayout.JAVA_LONG, KvmRegsLayout.RIP, regs.rip);
        kvmRegs.set(ValueLayout.JAVA_LONG, KvmRegsLayout.RFLAGS, regs.rflags);
    }

    static Segment readSegment(MemorySegment s, long at) {
        return new Segment(s.get(ValueLayout.JAVA_LONG, at + KvmSegmentLayout.BASE),
                s.get(ValueLayout.JAVA_INT, at + KvmSegmentLayout.LIMIT),
                s.get(ValueLayout.JAVA_SHORT, at + KvmSegmentLayout.SELECTOR) & 0xffff,
                s.get(ValueLayout.JAVA_BYTE, at + KvmSegmentLayout.TYPE) & 0xff,
                flag(s, at + KvmSegmentLayout.PRESENT),
                s.get(ValueLayout.JAVA_BYTE, at + KvmSegmentLayout.DPL) & 0xff,
                flag(s, at + KvmSegmentLayout.DB), flag(s, at + KvmSegmentLayout.S), flag(s, at + KvmSegmentLayout.L),
                flag(s, at + KvmSegmentLayout.G), flag(s, at + KvmSegmentLayout.AVL), flag(s, at + KvmSegmentLayout.UNUSABLE));
    }

    static void writeSegment(Segment g, MemorySegment s, long at) {
        s.set(ValueLayout.JAVA_LONG, at + KvmSegmentLayout.BASE, g.base());
        s.set(ValueLayout.JAVA_INT, at + KvmSegmentLayout.LIMIT, g.limit());
        s.set(ValueLayout.JAVA_SHORT, at + KvmSegmentLayout.SELECTOR, (short) g.selector());
        s.set(ValueLayout.JAVA_BYTE, at + KvmSegmentLayout.TYPE, (byte) g.type());
        s.set(ValueLayout.JAVA_BYTE, at + KvmSegmentLayout.PRESENT, bit(g.present()));
        s.set(ValueLayout.JAVA_BYTE, at + KvmSegmentLayout.DPL, (byte) g.dpl());
        s.set(ValueLayout.JAVA_BYTE, at + KvmSegmentLayout.DB, bit(g.db()));
        s.set(ValueLayout.JAVA_BYTE, at + KvmSegmentLayout.S, bit(g.s()));
        s.set(ValueLayout.JAVA_BYTE, at + KvmSegmentLayout.L, bit(g.l()));
        s.set(ValueLayout.JAVA_BYTE, at + KvmSegmentLayout.G, bit(g.g()));
        s.set(ValueLayout.JAVA_BYTE, at + KvmSegmentLayout.AVL, bit(g.avl()));
        s.set(ValueLayout.JAVA_BYTE, at + KvmSegmentLayout.UNUSABLE, bit(g.unusable()));
        s.set(ValueLayout.JAVA_BYTE, at + KvmSegmentLayout.PADDING, (byte) 0);
    }

    static DescriptorTable readDtable(MemorySegment s, long at) {
        return new DescriptorTable(s.get(ValueLayout.JAVA_LONG, at + KvmDtableLayout.BASE),
                s.get(ValueLayout.JAVA_SHORT, at + KvmDtableLayout.LIMIT) & 0xffff);
    }

    static void writeDtable(DescriptorTable t, MemorySegment s, long at) {
        s.set(ValueLayout.JAVA_LONG, at + KvmDtableLayout.BASE, t.base());
        s.set(ValueLayout.JAVA_SHORT, at + KvmDtableLayout.LIMIT, (short) t.limit());
        s.asSlice(at + KvmDtableLayout.LIMIT + 2, 6).fill((byte) 0);
    }

    static Sregs readSregs(MemorySegment s) {
        return new Sregs(readSegment(s, KvmSregsLayout.CS), readSegment(s, KvmSregsLayout.DS), readSegment(s, KvmSregsLayout.ES),
                readSegment(s, KvmSregsLayout.FS), readSegment(s, KvmSregsLayout.GS), readSegment(s, KvmSregsLayout.SS),
                readSegment(s, KvmSregsLayout.TR), readSegment(s, KvmSregsLayout.LDT),
                readDtable(s, KvmSregsLayout.GDT), readDtable(s, KvmSregsLayout.IDT),
                s.get(ValueLayout.JAVA_LONG, KvmSregsLayout.CR0), s.get(ValueLayout.JAVA_LONG, KvmSregsLayout.CR2),
                s.get(ValueLayout.JAVA_LONG, KvmSregsLayout.CR3), s.get(ValueLayout.JAVA_LONG, KvmSregsLayout.CR4),
                s.get(ValueLayout.JAVA_LONG, KvmSregsLayout.CR8), s.get(ValueLayout.JAVA_LONG, KvmSregsLayout.EFER),
                s.get(ValueLayout.JAVA_LONG, KvmSregsLayout.APIC_BASE));
    }

    /**
     * Writes all of kvm_sregs. The interrupt bitmap, which {@link Sregs} does not model, is written
     * as zero: KVM_SET_SREGS would inject the lowest set vector, and faultline injects no interrupts.
     */
    static void writeSregs(Sregs r, MemorySegment s) {
        writeSegment(r.cs(), s, KvmSregsLayout.CS);
        writeSegment(r.ds(), s, KvmSregsLayout.DS);
        writeSegment(r.es(), s, KvmSregsLayout.ES);
        writeSegment(r.fs(), s, KvmSregsLayout.FS);
        writeSegment(r.gs(), s, KvmSregsLayout.GS);
        writeSegment(r.ss(), s, KvmSregsLayout.SS);
        writeSegment(r.tr(), s, KvmSregsLayout.TR);
        writeSegment(r.ldt(), s, KvmSregsLayout.LDT);
        writeDtable(r.gdt(), s, KvmSregsLayout.GDT);
        writeDtable(r.idt(), s, KvmSregsLayout.IDT);
        s.set(ValueLayout.JAVA_LONG, KvmSregsLayout.CR0, r.cr0());
        s.set(ValueLayout.JAVA_LONG, KvmSregsLayout.CR2, r.cr2());
        s.set(ValueLayout.JAVA_LONG, KvmSregsLayout.CR3, r.cr3());
        s.set(ValueLayout.JAVA_LONG, KvmSregsLayout.CR4, r.cr4());
        s.set(ValueLayout.JAVA_LONG, KvmSregsLayout.CR8, r.cr8());
        s.set(ValueLayout.JAVA_LONG, KvmSregsLayout.EFER, r.efer());
        s.set(ValueLayout.JAVA_LONG, KvmSregsLayout.APIC_BASE, r.apicBase());
        s.asSlice(KvmSregsLayout.INTERRUPT_BITMAP, 8L * KvmSregsLayout.INTERRUPT_BITMAP_WORDS).fill((byte) 0);
    }

    private static boolean flag(MemorySegment s, long at) { return s.get(ValueLayout.JAVA_BYTE, at) != 0; }
    private static byte bit(boolean b) { return (byte) (b ? 1 : 0); }
}
