#' mmaavi: mosaic integration of single-cell multi-omics
#'
#' R interface to the Python package mmaavi. [RunMMAAVI()] trains on a `Seurat` or
#' `SingleCellExperiment` object and adds the embedding; [MMAAVIBayesFactors()] and
#' [MMAAVIImpute()] read a trained model back; [LoadMMAAVI()] opens a saved model in a later
#' session; [mmaavi_python_info()] says which Python is used; [ReadBMMCMosaic()] reads the
#' bundled real demo data. See `vignette("seurat", package = "mmaavi")` and
#' `vignette("sce", package = "mmaavi")`.
#'
#' @keywords internal
"_PACKAGE"
