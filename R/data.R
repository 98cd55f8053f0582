#' The bundled BMMC mosaic (RNA / ADT / ATAC), read without Python
#'
#' A small real subset of the NeurIPS 2021 multimodal single-cell benchmark (human bone
#' marrow mononuclear cells; Luecken et al. 2021, GEO GSE194122), the same data as the Python
#' package's `mmaavi.datasets.bmmc_mosaic()`: 1100 cells from two donors in four batches.
#' CITE-seq cells (batches `cite_s1d1`, `cite_s1d2`, 600 cells) measured RNA (1000 genes) and
#' ADT (134 antibodies); Multiome cells (`multiome_s1d1`, `multiome_s1d2`, 500 cells) measured
#' RNA (1134 genes) and ATAC (600 peaks). Counts are raw integers. The files and their
#' provenance are in `system.file("extdata", "bmmc_mosaic", package = "mmaavi")`.
#'
#' @return A list with `counts`, a named list of four `dgCMatrix` (features x cells):
#'   `cite_rna`, `cite_adt`, `multiome_rna`, `multiome_atac`; and `cells`, a `data.frame` with
#'   one row per cell (row names = cell names) and columns `block` (the RNA block of the cell),
#'   `batch`, `sample`, `assay`, `cell_type` (original fine labels) and `cell_type_l1` (11
#'   coarse labels).
#' @references Luecken, M. D. et al. (2021). A sandbox for prediction and integration of DNA,
#'   RNA, and proteins in single cells. NeurIPS Datasets and Benchmarks Track.
#' @examples
#' bmmc <- ReadBMMCMosaic()
#' vapply(bmmc$counts, dim, integer(2))
#' table(bmmc$cells$batch)
#' @export
ReadBMMCMosaic <- function() {
  dir <- system.file("extdata", "bmmc_mosaic", package = "mmaavi", mustWork = TRUE)
  blocks <- c("cite_rna", "cite_adt", "multiome_rna", "multiome_atac")
  cells <- utils::read.delim(file.path(dir, "cells.tsv.gz"),
    row.names = 1, stringsAsFactors = FALSE, check.names = FALSE
  )
  counts <- lapply(stats::setNames(blocks, blocks), function(block) {
    con <- gzfile(file.path(dir, paste0(block, ".mtx.gz")))
    x <- methods::as(Matrix::readMM(con), "CsparseMatrix")
    features <- readLines(file.path(dir, paste0(block, "_features.tsv.gz")))
    block_cells <- readLines(file.path(dir, paste0(block, "_cells.tsv.gz")))
    if (nrow(x) != length(features) || ncol(x) != length(block_cells)) {
      stop("the bundled file ", block, ".mtx.gz does not match its names; reinstall mmaavi.", call. = FALSE)
    }
    dimnames(x) <- list(features, block_cells)
    methods::as(x, "dMatrix")
  })
  list(counts = counts, cells = cells)
}
