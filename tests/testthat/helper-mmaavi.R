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

# RNA over the union of both gene sets, ADT and ATAC over every cell (zero where unmeasured),
# cells in the bundled order or shuffled with `shuffle_seed`.
bmmc_matrices <- function(shuffle_seed = NULL) {
  bmmc <- bmmc_data()
  cells <- rownames(bmmc$cells)
  if (!is.null(shuffle_seed)) {
    set.seed(shuffle_seed)
    cells <- sample(cells)
  }
  genes <- union(rownames(bmmc$counts$cite_rna), rownames(bmmc$counts$multiome_rna))
  rna <- pad_counts(bmmc$counts$cite_rna, genes, cells) +
    pad_counts(bmmc$counts$multiome_rna, genes, cells)
  list(
    rna = rna,
    adt = pad_counts(bmmc$counts$cite_adt, rownames(bmmc$counts$cite_adt), cells),
    atac = pad_counts(bmmc$counts$multiome_atac, rownames(bmmc$counts$multiome_atac), cells),
    cells = bmmc$cells[cells, ]
  )
}

bmmc_seurat <- function(shuffle_seed = NULL) {
  m <- bmmc_matrices(shuffle_seed)
  seu <- suppressWarnings(SeuratObject::CreateSeuratObject(counts = m$rna, meta.data = m$cells))
  seu[["ADT"]] <- SeuratObject::CreateAssayObject(counts = m$adt)
  seu[["ATAC"]] <- SeuratObject::CreateAssayObject(counts = m$atac)
  seu
}

bmmc_sce <- function(shuffle_seed = NULL) {
  m <- bmmc_matrices(shuffle_seed)
  sce <- SingleCellExperiment::SingleCellExperiment(
    assays = list(counts = m$rna), colData = S4Vectors::DataFrame(m$cells)
  )
  SingleCellExperiment::altExp(sce, "ADT") <-
    SummarizedExperiment::SummarizedExperiment(list(counts = m$adt))
  SingleCellExperiment::altExp(sce, "ATAC") <-
    SummarizedExperiment::SummarizedExperiment(list(counts = m$atac))
  sce
}

# RunMMAAVI on the bundled mosaic, trained once per test run for each setting (n.components 10,
# seed 0, one thread): short runs for shapes and identities, a longer one for biology.
fit_cache <- new.env(parent = emptyenv())

bmmc_fit <- function(kind = c("seurat", "sce"), max_epochs = 2L) {
  kind <- match.arg(kind)
  key <- paste(kind, max_epochs)
  if (is.null(fit_cache[[key]])) {
    object <- if (kind == "seurat") bmmc_seurat() else bmmc_sce()
    fit_cache[[key]] <- suppressMessages(RunMMAAVI(object,
      batch = "batch", n.components = 10, max_epochs = max_epochs, verbose = FALSE
    ))
  }
  fit_cache[[key]]
}
