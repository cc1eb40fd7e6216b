// Sizes as operators read them, in one form everywhere (status, logs, errors).

/** `n` bytes as MiB with one decimal: "12.3 MiB". */
export function mib(n: number): string {
  return `${(n / 1048576).toFixed(1)} MiB`;
}
