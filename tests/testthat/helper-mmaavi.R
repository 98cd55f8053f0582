# Shared by the tests: the bundled BMMC mosaic as Seurat / SingleCellExperiment objects, and
# the rule for tests that need Python (skip with the reason; in CI, where CI=true, fail).

skip_without_python <- function() {
  reason <- .mmaavi_available(reason = TRUE)
  if (is.null(reason)) {
    return(invisible(TRUE))
  }
  if (identical(tolower(Sys.getenv("CI")), "true")) {
    fail(paste("CI=true but Python mmaavi is unusable:", reason))
  }
  skip(paste("Python mmaavi is unusable:", reason))
}

# Counts over `features` x `cells`, zero where `x` has no entry (what merge() makes).
pad_counts <- function(x, features, cells) {
  t <- Matrix::summary(x)
  Matrix::sparseMatrix(
    i = match(rownames(x), features)[t$i], j = match(colnames(x), cells)[t$j], x = t$x,
    dims = c(length(features), length(cells)), dimnames = list(features, cells)
  )
}

bmmc_data <- local({
  cache <- NULL
  function() {
    if (is.null(cache)) cache <<- ReadBMMCMosaic()
    cache
  }
})

# RNA over the union of both gene sets, ADT and ATAC over every cell (zero where unmeasured).
bmmc_matrices <- function() {
  bmmc <- bmmc_data()
  cells <- rownames(bmmc$cells)
  genes <- union(rownames(bmmc$counts$cite_rna), rownames(bmmc$counts$multiome_rna))
  rna <- pad_counts(bmmc$counts$cite_rna, genes, cells) +
    pad_counts(bmmc$counts$multiome_rna, genes, cells)
  list(
    rna = rna,
    adt = pad_counts(bmmc$counts$cite_adt, rownames(bmmc$counts$cite_adt), cells),
    atac = pad_counts(bmmc$counts$multiome_atac, rownames(bmmc$counts$multiome_atac), cells),
    cells = bmmc$cells
  )
}

bmmc_seurat <- function() {
  m <- bmmc_matrices()
  seu <- suppressWarnings(SeuratObject::CreateSeuratObject(counts = m$rna, meta.data = m$cells))
  seu[["ADT"]] <- SeuratObject::CreateAssayObject(counts = m$adt)
  seu[["ATAC"]] <- SeuratObject::CreateAssayObject(counts = m$atac)
  seu
}

bmmc_sce <- function() {
  m <- bmmc_matrices()
  sce <- SingleCellExperiment::SingleCellExperiment(
    assays = list(counts = m$rna), colData = S4Vectors::DataFrame(m$cells)
  )
  SingleCellExperiment::altExp(sce, "ADT") <-
    SummarizedExperiment::SummarizedExperiment(list(counts = m$adt))
  SingleCellExperiment::altExp(sce, "ATAC") <-
    SummarizedExperiment::SummarizedExperiment(list(counts = m$atac))
  sce
}
