package dev.faultline.hv;

/** GDTR/IDTR: base and limit. */
public record DescriptorTable(long base, int limit) {}
